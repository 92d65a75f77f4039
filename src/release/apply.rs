//! `esgflow deploy`, in order:
//! 1. the parameters are checked ([`Values::problems`]); any problem stops it before anything is
//!    built or called, naming the parameter;
//! 2. what the functions need is read and, unless this is a dry run, made: the snapshot bucket,
//!    the CLS logset, topics and indexes, the dashboard, the execution roles and their policies
//!    ([`super::provision`]);
//! 3. the resources table is printed (what is created, updated, left alone), then the details;
//! 4. one `serverless.yml` per function is written and deployed with the serverless CLI;
//! 5. audit's retry of failed batches is set through the SCF API.
//!
//! A second run with nothing changed writes nothing in steps 2 and 5.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use esgflow::adapters::tencent::api::ApiClient;
use esgflow::adapters::tencent::Credentials;

use super::deploy::{generate, role_specs, shipping_of, write_all, Stack, Values};
use super::provision::{
    check_service_role, dashboard_data, ensure_async_retry, ensure_bucket, ensure_cls,
    ensure_dashboard, ensure_roles, ensure_shipping, BucketSpec, Change, ClsNames, Step,
};

/// The whole deploy may take this long for its API calls (the serverless CLI has its own).
const API_BUDGET: Duration = Duration::from_secs(300);

/// What `esgflow deploy` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// `template.yaml`.
    pub template: PathBuf,
    /// Where the generated files go.
    pub out: PathBuf,
    /// Read and print only.
    pub dry_run: bool,
    /// The serverless CLI (`scf` of serverless-cloud-framework).
    pub cli: PathBuf,
    /// Where API 3.0 and COS requests go instead of Tencent Cloud (`ESGFLOW_DEPLOY_ENDPOINT`,
    /// the stand-ins in tests).
    pub endpoint: Option<String>,
    /// How long one run of the serverless CLI may take before it is stopped.
    pub cli_timeout: Duration,
}

/// Runs `cli <command>` in `dir`, stopping it (and reporting so) if it has not finished within
/// `timeout`.
async fn run_cli(cli: &Path, command: &str, dir: &Path, timeout: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new(cli)
        .arg(command)
        .current_dir(dir)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", cli.display()))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("`{command}` failed ({status})")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "`{command}` did not finish within {} s and was stopped (--cli-timeout)",
                timeout.as_secs()
            ))
        }
    }
}

/// Why a deploy stopped.
#[derive(Debug)]
pub enum Stopped {
    /// Bad input or a missing prerequisite, named; nothing was changed. Exit code 2.
    Refused(Vec<String>),
    /// A step failed part way. Exit code 1.
    Failed(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Refused(problems) => {
                writeln!(f, "esgflow deploy: nothing was built or called:")?;
                for problem in problems {
                    writeln!(f, "  {problem}")?;
                }
                Ok(())
            }
            Stopped::Failed(why) => writeln!(f, "esgflow deploy: {why}"),
        }
    }
}

/// The API client of a deploy: the key given, in `region`, at the stand-in's address if any.
fn client_for(
    region: &str,
    domain: &str,
    options: &Options,
    credentials: &Credentials,
) -> ApiClient {
    ApiClient::new(region, options.endpoint.clone())
        .with_domain(domain)
        .with_credentials(credentials.clone())
}

/// The serverless CLI is needed unless this is a dry run.
fn missing_cli(options: &Options) -> Option<String> {
    (!options.dry_run && !options.cli.exists()).then(|| {
        format!(
            "the serverless CLI is not installed at {} (run `make setup-deploy`)",
            options.cli.display()
        )
    })
}

/// The deploy key, from the serverless CLI's own settings (`TENCENT_SECRET_ID`,
/// `TENCENT_SECRET_KEY`, and `TENCENT_TOKEN` for temporary keys).
pub fn deploy_credentials(lookup: &dyn Fn(&str) -> Option<String>) -> Option<Credentials> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    Some(Credentials {
        secret_id: get("TENCENT_SECRET_ID")?,
        secret_key: get("TENCENT_SECRET_KEY")?,
        token: get("TENCENT_TOKEN"),
    })
}

/// Runs the deploy (or the dry run), printing the resources table and details to stdout and
/// progress to stderr.
pub async fn deploy(
    options: &Options,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Stopped> {
    let stack = Stack::load(&options.template).map_err(|e| Stopped::Refused(vec![e]))?;
    let mut values = Values::resolve(&stack, lookup).map_err(|e| Stopped::Refused(vec![e]))?;
    let mut problems = values.problems(&stack);
    let credentials = deploy_credentials(lookup);
    if credentials.is_none() && !options.dry_run {
        problems.push("no Tencent Cloud credentials: set TENCENT_SECRET_ID and TENCENT_SECRET_KEY (a key allowed to manage SCF, CLS, CAM and COS), or run `make deploy DRY_RUN=1` to see what would be deployed".into());
    }
    problems.extend(missing_cli(options));
    if !problems.is_empty() {
        return Err(Stopped::Refused(problems));
    }
    let root = options
        .template
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let region = values.substitute(&stack.region, false);
    let deadline = Instant::now() + API_BUDGET;
    let failed = |e: String| Stopped::Failed(e);
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let client = credentials
        .as_ref()
        .map(|c| client_for(&region, values.get("API_DOMAIN").unwrap_or(""), options, c));
    match (&credentials, &client) {
        (Some(credentials), Some(client)) => {
            let bucket = BucketSpec {
                bucket: values
                    .get("SNAPSHOT_BUCKET")
                    .unwrap_or_default()
                    .to_string(),
                region: region.clone(),
                endpoint: options.endpoint.clone(),
            };
            steps.push(
                ensure_bucket(&bucket, credentials, options.dry_run, deadline)
                    .await
                    .map_err(failed)?,
            );
            let cls = ensure_cls(
                client,
                &ClsNames::for_stack(&stack.stack),
                (
                    values.given("ESG_HITS_TOPIC_ID"),
                    values.given("ESG_TRAFFIC_TOPIC_ID"),
                ),
                options.dry_run,
                deadline,
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
            steps.extend(cls.steps);
            notes.extend(cls.warnings);
            let data = dashboard_data(
                &region,
                cls.logset_id.as_deref().unwrap_or_default(),
                cls.hits_topic_id
                    .as_deref()
                    .unwrap_or("<created by deploy>"),
                cls.traffic_topic_id
                    .as_deref()
                    .unwrap_or("<created by deploy>"),
            );
            steps.push(
                ensure_dashboard(client, &stack.stack, &data, options.dry_run, deadline)
                    .await
                    .map_err(|e| failed(e.to_string()))?,
            );
            for (name, id) in [
                ("ESG_HITS_TOPIC_ID", cls.hits_topic_id),
                ("ESG_TRAFFIC_TOPIC_ID", cls.traffic_topic_id),
            ] {
                values.set(
                    name,
                    id.unwrap_or_else(|| format!("<created by deploy: {name}>")),
                );
            }
            let roles = role_specs(&stack, &values).map_err(failed)?;
            steps.extend(
                ensure_roles(client, &roles, options.dry_run, deadline)
                    .await
                    .map_err(|e| failed(e.to_string()))?,
            );
            let service = check_service_role(client, deadline)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if service.change == Change::Absent {
                notes.push(format!("{}: {}", service.name, service.detail));
            }
            steps.push(service);
        }
        _ => {
            notes.push(
                "no credentials: the account was not read, so every prerequisite shows as `create`; what exists would be kept"
                    .into(),
            );
            for (kind, name) in prerequisites(&stack, &values) {
                steps.push(Step {
                    kind,
                    name,
                    change: Change::Create,
                    detail: "not checked".into(),
                });
            }
            for name in ["ESG_HITS_TOPIC_ID", "ESG_TRAFFIC_TOPIC_ID"] {
                if values.given(name).is_none() {
                    values.set(name, format!("<created by deploy: {name}>"));
                }
            }
        }
    }
    for function in stack.functions.keys() {
        steps.push(Step {
            kind: "scf function",
            name: format!("{}-{function}", stack.stack),
            change: Change::Update,
            detail: "created or updated by the serverless CLI".into(),
        });
    }
    if options.dry_run {
        // Made after the functions (it ships to one); a dry run shows what it would do.
        for function in stack.functions.keys() {
            let Some(shipping) = shipping_of(&stack, function, &values) else {
                continue;
            };
            match &client {
                Some(client) => {
                    let (step, note) = ensure_shipping(client, &shipping, true, deadline)
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                    steps.push(step);
                    notes.extend(note);
                }
                None => steps.push(Step {
                    kind: "cls shipping",
                    name: format!("{} → {}", shipping.topic, shipping.function),
                    change: Change::Create,
                    detail: "not checked".into(),
                }),
            }
        }
    }
    println!(
        "# esgflow deploy{}: stack {} in {region}, from {}\n",
        if options.dry_run { " --dry-run" } else { "" },
        stack.stack,
        options.template.display()
    );
    print!("{}", table(&steps));
    for note in &notes {
        println!("note: {note}");
    }
    if options.dry_run {
        print_details(&stack, &values, root, options)?;
        return Ok(());
    }
    let cli = std::fs::canonicalize(&options.cli).map_err(|e| failed(e.to_string()))?;
    for dir in write_all(&stack, &values, root, &options.out).map_err(failed)? {
        eprintln!("deploying {}", dir.display());
        run_cli(&cli, "deploy", &dir, options.cli_timeout)
            .await
            .map_err(|e| failed(format!("the serverless CLI in {}: {e}", dir.display())))?;
    }
    let client = client.expect("credentials were checked above");
    let mut after = Vec::new();
    for (name, function) in &stack.functions {
        if let Some(config) = &function.async_config {
            after.push(
                ensure_async_retry(
                    &client,
                    &format!("{}-{name}", stack.stack),
                    &stack.namespace,
                    config.retry_num,
                    config.msg_ttl,
                    false,
                    deadline,
                )
                .await
                .map_err(|e| failed(e.to_string()))?,
            );
        }
    }
    let mut shipping_notes = Vec::new();
    for function in stack.functions.keys() {
        if let Some(shipping) = shipping_of(&stack, function, &values) {
            let (step, note) = ensure_shipping(&client, &shipping, false, deadline)
                .await
                .map_err(|e| failed(e.to_string()))?;
            after.push(step);
            shipping_notes.extend(note);
        }
    }
    print!("{}", table(&after));
    for note in &shipping_notes {
        println!("note: {note}");
    }
    eprintln!("deployed. Verify with the console: docs/deploy.md, \"Verify, with the console\".");
    Ok(())
}

/// What would be made, named, when the account cannot be read.
fn prerequisites(stack: &Stack, values: &Values) -> Vec<(&'static str, String)> {
    let names = ClsNames::for_stack(&stack.stack);
    let mut rows = vec![(
        "cos bucket",
        values
            .get("SNAPSHOT_BUCKET")
            .unwrap_or_default()
            .to_string(),
    )];
    if values.given("ESG_HITS_TOPIC_ID").is_none() || values.given("ESG_TRAFFIC_TOPIC_ID").is_none()
    {
        rows.push(("cls logset", names.logset.clone()));
    }
    for (parameter, name) in [
        ("ESG_HITS_TOPIC_ID", names.hits_topic),
        ("ESG_TRAFFIC_TOPIC_ID", names.traffic_topic),
    ] {
        let given = values.given(parameter);
        if given.is_none() {
            rows.push(("cls topic", name.clone()));
        }
        rows.push(("cls index", given.map_or(name, str::to_string)));
    }
    rows.push(("cls dashboard", stack.stack.clone()));
    for function in stack.functions.values() {
        rows.push(("cam role", function.role.clone()));
        rows.push(("cam policy", format!("{}-policy", function.role)));
        rows.push((
            "cam attachment",
            format!("{}-policy → {}", function.role, function.role),
        ));
    }
    rows
}

/// The resources table: one row per resource.
pub fn table(steps: &[Step]) -> String {
    let kind_width = steps.iter().map(|s| s.kind.len()).max().unwrap_or(0).max(8);
    let name_width = steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<kind_width$}  {:<name_width$}  {:<6}  detail\n",
        "resource", "name", "action"
    );
    for step in steps {
        out.push_str(
            format!(
                "{:<kind_width$}  {:<name_width$}  {:<6}  {}",
                step.kind,
                step.name,
                step.change.label(),
                step.detail
            )
            .trim_end(),
        );
        out.push('\n');
    }
    out
}

fn print_details(
    stack: &Stack,
    values: &Values,
    root: &Path,
    options: &Options,
) -> Result<(), Stopped> {
    for function in stack.functions.keys() {
        let generated =
            generate(stack, function, values, true).map_err(|e| Stopped::Failed(e.to_string()))?;
        let package = root.join(&stack.functions[function].package);
        println!("\n## {function} → {}", generated.name);
        println!(
            "# package: {} ({})",
            package.display(),
            if package.exists() {
                "built"
            } else {
                "not built yet: make package"
            }
        );
        println!("# {}/serverless.yml", options.out.join(function).display());
        print!("{}", generated.serverless_yml);
        println!(
            "# {}/policy.json (role {})",
            options.out.join(function).display(),
            stack.functions[function].role
        );
        println!("{}", generated.policy_json);
        println!(
            "# would run: (cd {} && {} deploy)",
            options.out.join(function).display(),
            options.cli.display()
        );
    }
    Ok(())
}

/// What `esgflow destroy` was asked besides [`Options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Removal {
    /// Delete the topics the deploy created, and their logs.
    pub delete_logs: bool,
    /// Empty and delete the snapshot bucket.
    pub delete_snapshots: bool,
}

/// `esgflow destroy`: removes the functions (serverless CLI `remove`), the execution roles and
/// their policies; the topics (with their logs) and the bucket (with its snapshots) only when
/// asked. Prints the resources table; with a dry run, only reads.
pub async fn destroy(
    options: &Options,
    removal: Removal,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Stopped> {
    use super::provision::{remove_bucket, remove_cls, remove_dashboard, remove_roles};
    let stack = Stack::load(&options.template).map_err(|e| Stopped::Refused(vec![e]))?;
    let values = Values::resolve(&stack, lookup).map_err(|e| Stopped::Refused(vec![e]))?;
    // Only what naming the resources needs must be right.
    let mut problems: Vec<String> = values
        .problems(&stack)
        .into_iter()
        .filter(|p| p.starts_with("REGION") || p.starts_with("SNAPSHOT_BUCKET"))
        .collect();
    let Some(credentials) = deploy_credentials(lookup) else {
        problems.push(
            "no Tencent Cloud credentials: set TENCENT_SECRET_ID and TENCENT_SECRET_KEY".into(),
        );
        return Err(Stopped::Refused(problems));
    };
    problems.extend(missing_cli(options));
    if !problems.is_empty() {
        return Err(Stopped::Refused(problems));
    }
    let region = values.substitute(&stack.region, false);
    let deadline = Instant::now() + API_BUDGET;
    let failed = |e: String| Stopped::Failed(e);
    let client = client_for(
        &region,
        values.get("API_DOMAIN").unwrap_or(""),
        options,
        &credentials,
    );
    let mut steps = Vec::new();
    for function in stack.functions.keys() {
        let generated = generate(&stack, function, &values, false).map_err(failed)?;
        let found = client
            .call(
                "scf",
                "2018-04-16",
                "GetFunction",
                &serde_json::json!({"FunctionName": generated.name, "Namespace": stack.namespace}),
                deadline,
            )
            .await;
        match found {
            Ok(_) => {}
            Err(error) if error.code.starts_with("ResourceNotFound") => {
                steps.push(Step {
                    kind: "scf function",
                    name: generated.name,
                    change: Change::Absent,
                    detail: String::new(),
                });
                continue;
            }
            Err(error) => return Err(failed(error.to_string())),
        }
        if !options.dry_run {
            let dir = options.out.join(function);
            std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
            std::fs::write(dir.join("serverless.yml"), &generated.serverless_yml)
                .map_err(|e| failed(e.to_string()))?;
            eprintln!("removing {}", generated.name);
            run_cli(&options.cli, "remove", &dir, options.cli_timeout)
                .await
                .map_err(|e| {
                    failed(format!(
                        "the serverless CLI, removing {}: {e}",
                        generated.name
                    ))
                })?;
        }
        steps.push(Step {
            kind: "scf function",
            name: generated.name,
            change: Change::Delete,
            detail: "removed by the serverless CLI, with its triggers".into(),
        });
    }
    let roles = role_specs(&stack, &values).map_err(failed)?;
    steps.extend(
        remove_roles(&client, &roles, options.dry_run, deadline)
            .await
            .map_err(|e| failed(e.to_string()))?,
    );
    steps.push(
        remove_dashboard(&client, &stack.stack, options.dry_run, deadline)
            .await
            .map_err(|e| failed(e.to_string()))?,
    );
    steps.extend(
        remove_cls(
            &client,
            &ClsNames::for_stack(&stack.stack),
            removal.delete_logs,
            options.dry_run,
            deadline,
        )
        .await
        .map_err(|e| failed(e.to_string()))?,
    );
    if let Some(bucket) = values.get("SNAPSHOT_BUCKET").filter(|b| !b.is_empty()) {
        let spec = BucketSpec {
            bucket: bucket.to_string(),
            region: region.clone(),
            endpoint: options.endpoint.clone(),
        };
        steps.push(
            remove_bucket(
                &spec,
                &credentials,
                removal.delete_snapshots,
                options.dry_run,
                deadline,
            )
            .await
            .map_err(failed)?,
        );
    }
    println!(
        "# esgflow destroy{}: stack {} in {region}\n",
        if options.dry_run { " --dry-run" } else { "" },
        stack.stack
    );
    print!("{}", table(&steps));
    Ok(())
}
