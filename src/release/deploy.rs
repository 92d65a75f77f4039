//! The deployment description (`template.yaml`) and what is generated from it: one
//! `serverless.yml` per function for the serverless CLI's `scf` component
//! (<https://cloud.tencent.com/document/product/1154/43228>), and one CAM policy document per function role. Nothing generated is
//! kept in the repository: `dist/deploy/` is rebuilt on every `make deploy`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The whole stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Stack (app) name.
    pub stack: String,
    /// Region (may be a parameter).
    pub region: String,
    /// SCF namespace.
    pub namespace: String,
    /// Deploy-time parameters, by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    /// The functions, by name.
    pub functions: BTreeMap<String, Function>,
}

/// A `${NAME}` placeholder's declaration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// What it is.
    pub description: String,
    /// Used when the environment does not set it.
    #[serde(default)]
    pub default: Option<String>,
    /// Never printed.
    #[serde(default)]
    pub secret: bool,
    /// Set by the deploy from the other parameters ([`Values::derive`]), never from the
    /// environment.
    #[serde(default)]
    pub derived: bool,
    /// What a value must look like.
    pub check: Check,
}

/// The forms a parameter's value is checked against before anything is built or called. An
/// empty value passes every check; whether it may be empty is the parameter's `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A region id: `ap-guangzhou`, `na-siliconvalley`, `ap-shanghai-fsi`.
    Region,
    /// Digits only (AppID, UIN).
    Digits,
    /// A CLS topic id: a UUID, or a custom `<lowercase-name>-<APPID>`.
    TopicId,
    /// A COS bucket, `<name>-<APPID>`: lowercase letters, digits and `-`, at most 50 characters.
    Bucket,
    /// A bearer token: at least 24 characters, no whitespace.
    Token,
    /// `true` or `false`.
    Bool,
    /// Comma-separated VPC ids.
    VpcList,
    /// An `https://` URL.
    Url,
    /// `vpc-` and 8 lowercase letters or digits.
    VpcId,
    /// `subnet-` and 8 lowercase letters or digits.
    SubnetId,
    /// A CMQ queue name: a letter, then letters, digits, `-` and `_`, at most 64.
    Name,
    /// Any text without line breaks.
    Text,
    /// `china` or `intl`.
    Site,
}

/// Most characters a parameter's value may have: a function's whole environment is limited to
/// 4 KB, and no setting needs more.
const MAX_VALUE_CHARS: usize = 1024;

/// Most bytes of a function's environment, names and values together.
const MAX_ENVIRONMENT_BYTES: usize = 4096;

/// The `${NAME}` placeholders of `text`.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

impl Check {
    /// What is wrong with `value`, if anything.
    fn problem(self, value: &str) -> Option<String> {
        let lower_alnum = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let id = |s: &str, prefix: &str| {
            s.strip_prefix(prefix)
                .is_some_and(|rest| rest.len() == 8 && lower_alnum(rest))
        };
        let hyphenated = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && !s.ends_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let ok = match self {
            Check::Region => {
                let parts: Vec<&str> = value.split('-').collect();
                parts.len() >= 2 && parts.iter().all(|p| lower_alnum(p)) && parts[0].len() == 2
            }
            Check::Digits => digits(value),
            Check::TopicId => {
                let uuid = value.len() == 36
                    && value.split('-').map(str::len).eq([8, 4, 4, 4, 12])
                    && value
                        .chars()
                        .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
                let custom = hyphenated(value)
                    && value
                        .rsplit_once('-')
                        .is_some_and(|(name, appid)| !name.is_empty() && digits(appid));
                uuid || custom
            }
            Check::Bucket => {
                value.len() <= 50
                    && hyphenated(value)
                    && value
                        .rsplit_once('-')
                        .is_some_and(|(name, appid)| !name.is_empty() && digits(appid))
            }
            Check::Token => {
                // A client sends it in an Authorization header: visible ASCII only.
                return (value.chars().count() < 24 || !value.bytes().all(|b| b.is_ascii_graphic()))
                    .then(|| {
                        format!(
                            "must be at least 24 characters of visible ASCII, no spaces (it has {}); make one with `openssl rand -hex 24`",
                            value.chars().count()
                        )
                    });
            }
            Check::Bool => matches!(value, "true" | "false"),
            Check::Site => matches!(value, "china" | "intl"),
            Check::VpcList => value.split(',').all(|v| id(v.trim(), "vpc-")),
            Check::Url => {
                value
                    .strip_prefix("https://")
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                    && !value.chars().any(char::is_whitespace)
            }
            Check::VpcId => id(value, "vpc-"),
            Check::SubnetId => id(value, "subnet-"),
            Check::Name => {
                value.len() <= 64
                    && value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }
            Check::Text => !value.contains(['\n', '\r']),
        };
        (!ok).then(|| {
            match self {
                Check::Region => "is not a region id (like ap-guangzhou)",
                Check::Digits => "must be digits only",
                Check::TopicId => "is not a CLS topic id (a UUID like 0f8e1b42-8c6a-4b56-9b3e-2d5c1a7e9f00)",
                Check::Bucket => "is not a COS bucket name: <name>-<APPID>, lowercase letters, digits and -, at most 50 characters",
                Check::Token => unreachable!("answered above"),
                Check::Bool => "must be true or false",
                Check::VpcList => "must be VPC ids (vpc-xxxxxxxx), separated by commas",
                Check::Url => "must be an https:// URL",
                Check::VpcId => "is not a VPC id (vpc-xxxxxxxx)",
                Check::SubnetId => "is not a subnet id (subnet-xxxxxxxx)",
                Check::Name => "is not a queue name (a letter, then letters, digits, - and _; at most 64)",
                Check::Text => "must be one line",
                Check::Site => "must be china or intl",
            }
            .to_string()
        })
    }
}

/// One function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Function {
    /// What it does.
    pub description: String,
    /// The zip `make package` produces.
    pub package: String,
    /// `CustomRuntime`.
    pub runtime: String,
    /// `bootstrap`.
    pub handler: String,
    /// MB.
    pub memory_size: u32,
    /// Seconds.
    pub timeout: u32,
    /// Seconds.
    pub init_timeout: u32,
    /// Execution role name.
    pub role: String,
    /// The role's policy statements.
    pub policy: Vec<Statement>,
    /// VPC placement.
    #[serde(default)]
    pub vpc: Option<Vpc>,
    /// Async invocation settings.
    #[serde(default, rename = "async")]
    pub async_config: Option<AsyncConfig>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Triggers.
    pub events: Vec<BTreeMap<String, Value>>,
}

/// One CAM policy statement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `allow`.
    pub effect: String,
    /// Actions, `service:Action`.
    pub action: Vec<String>,
    /// Resources.
    pub resource: Vec<String>,
}

/// VPC placement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vpc {
    /// VPC id (empty: none).
    pub vpc_id: String,
    /// Subnet id.
    pub subnet_id: String,
}

/// Async invocation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsyncConfig {
    /// Retries of a failed event.
    pub retry_num: u32,
    /// Oldest event retried, seconds.
    #[serde(rename = "msgTTL")]
    pub msg_ttl: u32,
    /// Dead-letter queue.
    #[serde(default)]
    pub dead_letter: Option<DeadLetter>,
}

/// Dead-letter queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// `CMQ-QUEUE` or `CMQ-TOPIC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its name (empty: none).
    pub name: String,
}

impl Stack {
    /// Reads `template.yaml`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every `${NAME}` used anywhere in the stack.
    pub fn placeholders(&self) -> Vec<String> {
        let text = serde_json::to_string(&self.raw()).expect("the stack serializes");
        let mut names: Vec<String> = placeholders(&text).map(str::to_string).collect();
        names.sort();
        names.dedup();
        names
    }

    fn raw(&self) -> Value {
        json!({
            "region": self.region,
            "functions": self.functions.iter().map(|(name, f)| (name.clone(), json!({
                "environment": f.environment, "events": f.events, "role": f.role,
                "policy": f.policy.iter().map(|s| json!({"action": s.action, "resource": s.resource})).collect::<Vec<_>>(),
                "vpc": f.vpc.as_ref().map(|v| json!([v.vpc_id, v.subnet_id])),
                "dead_letter": f.async_config.as_ref().and_then(|a| a.dead_letter.as_ref()).map(|d| d.name.clone()),
            }))).collect::<Map<String, Value>>(),
        })
    }
}

/// Parameter values: from `lookup` (the environment), else the declared default.
pub struct Values {
    values: BTreeMap<String, String>,
    /// Declared parameters with no value.
    pub missing: Vec<String>,
    secrets: Vec<String>,
}

impl Values {
    /// Resolves every placeholder of `stack`; an undeclared placeholder is an error.
    pub fn resolve(stack: &Stack, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        let mut secrets = Vec::new();
        if let Some(name) = stack
            .placeholders()
            .into_iter()
            .find(|name| !stack.parameters.contains_key(name))
        {
            return Err(format!(
                "template.yaml uses ${{{name}}}, which `parameters` does not declare"
            ));
        }
        for (name, parameter) in &stack.parameters {
            let name = name.clone();
            if parameter.secret {
                secrets.push(name.clone());
            }
            if parameter.derived {
                continue;
            }
            match lookup(&name).or_else(|| parameter.default.clone()) {
                Some(value) => {
                    values.insert(name, value);
                }
                None => missing.push(name),
            }
        }
        let mut resolved = Self {
            values,
            missing,
            secrets,
        };
        resolved.derive(stack);
        Ok(resolved)
    }

    /// Sets the derived parameters the stack uses: the API domain of the account's site, and
    /// the CLS endpoint — the internal one only for functions placed in a VPC on the China site
    /// (the internal domain is documented for access from inside the region's network; nothing
    /// says a function outside a VPC reaches it, nor names an internal domain for the
    /// international site).
    fn derive(&mut self, stack: &Stack) {
        let intl = self.get("SITE") == Some("intl");
        let domain = if intl {
            "intl.tencentcloudapi.com"
        } else {
            "tencentcloudapi.com"
        };
        let in_vpc = self.given("VPC_ID").is_some();
        let cls = if in_vpc && !intl {
            "https://cls.internal.tencentcloudapi.com".to_string()
        } else {
            format!("https://cls.{domain}")
        };
        for (name, value) in [("API_DOMAIN", domain.to_string()), ("CLS_ENDPOINT", cls)] {
            if stack.parameters.get(name).is_some_and(|p| p.derived) {
                self.values.insert(name.to_string(), value);
            }
        }
    }

    /// `text` with every placeholder replaced; a missing one becomes `<unset NAME>`, a secret
    /// one `<secret NAME: set>` (or `: unset` when empty) when `redact` is set.
    pub fn substitute(&self, text: &str, redact: bool) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            match self.values.get(name) {
                Some(value) if redact && self.secrets.iter().any(|s| s == name) => {
                    let state = if value.is_empty() { "unset" } else { "set" };
                    out.push_str(&format!("<secret {name}: {state}>"))
                }
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("<unset {name}>")),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn value(&self, text: &str, redact: bool) -> Value {
        Value::String(self.substitute(text, redact))
    }

    /// A parameter's value, if it has one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A parameter's value when it is set and not empty (an optional id left blank is unset).
    pub fn given(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Sets a parameter's value (the id of a topic the deploy created).
    pub fn set(&mut self, name: &str, value: String) {
        self.missing.retain(|m| m != name);
        self.values.insert(name.to_string(), value);
    }

    /// Everything wrong with the values of `stack`'s parameters, one line each naming the
    /// parameter (a secret's value is never shown): required ones unset, values of the wrong form,
    /// and the pairs that must agree. Empty when the stack may be deployed.
    pub fn problems(&self, stack: &Stack) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, parameter) in &stack.parameters {
            match self.values.get(name) {
                None => problems.push(format!("{name} is not set: {}", parameter.description)),
                Some(value) if value.is_empty() => {}
                Some(value) => {
                    let problem = if value.contains("${") {
                        Some("holds `${`, which the serverless framework would read as a variable: remove it".to_string())
                    } else if value.chars().count() > MAX_VALUE_CHARS {
                        Some(format!(
                            "is {} characters long, over the {MAX_VALUE_CHARS} a setting may have",
                            value.chars().count()
                        ))
                    } else {
                        parameter.check.problem(value)
                    };
                    if let Some(problem) = problem {
                        let shown = if parameter.secret {
                            "(secret)".to_string()
                        } else {
                            format!("{value:?}")
                        };
                        problems.push(format!("{name} {shown} {problem}"));
                    }
                }
            }
        }
        let value = |name: &str| self.get(name).unwrap_or("");
        if let (Some((_, appid)), true) = (
            value("SNAPSHOT_BUCKET").rsplit_once('-'),
            !value("APPID").is_empty(),
        ) {
            if appid != value("APPID") {
                problems.push(format!(
                    "SNAPSHOT_BUCKET ends in {appid}, not APPID {}: a bucket name ends in the account's AppID",
                    value("APPID")
                ));
            }
        }
        if !value("ADMIN_TOKEN").is_empty() && value("ADMIN_TOKEN") == value("LOOKUP_TOKEN") {
            problems
                .push("ADMIN_TOKEN equals LOOKUP_TOKEN: the admin token must be another".into());
        }
        if value("VPC_ID").is_empty() != value("SUBNET_ID").is_empty() {
            problems.push("VPC_ID and SUBNET_ID go together: set both or neither".into());
        }
        problems.extend(self.environment_problems(stack));
        problems
    }

    /// Each function whose environment would pass the 4 KB SCF allows a function (Quota
    /// Limits, https://www.tencentcloud.com/document/product/583/11637), counted as the bytes
    /// of every name and value, naming the settings that take the most of it.
    fn environment_problems(&self, stack: &Stack) -> Vec<String> {
        let mut problems = Vec::new();
        for (function, f) in &stack.functions {
            let bytes: usize = f
                .environment
                .iter()
                .map(|(name, text)| name.len() + self.substitute(text, false).len())
                .sum();
            if bytes <= MAX_ENVIRONMENT_BYTES {
                continue;
            }
            let mut settings: Vec<(usize, &str)> = f
                .environment
                .values()
                .flat_map(|text| placeholders(text))
                .filter_map(|name| Some((self.values.get(name)?.len(), name)))
                .filter(|(len, _)| *len > 0)
                .collect();
            settings.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            settings.dedup_by_key(|(_, name)| *name);
            let largest: Vec<String> = settings
                .iter()
                .take(3)
                .map(|(len, name)| format!("{name} ({len} bytes)"))
                .collect();
            problems.push(format!(
                "the {function} function's environment would be {bytes} bytes, over the {MAX_ENVIRONMENT_BYTES} SCF allows a function: shorten {}",
                largest.join(", ")
            ));
        }
        problems
    }
}

/// The CLS shipping `function` declares (its `cls` event), with its parameters filled in.
pub fn shipping_of(
    stack: &Stack,
    function: &str,
    values: &Values,
) -> Option<crate::release::provision::Shipping> {
    let f = stack.functions.get(function)?;
    let settings = f.events.iter().find_map(|e| e.get("cls"))?;
    let number = |key: &str| settings.get(key).and_then(Value::as_u64);
    Some(crate::release::provision::Shipping {
        topic: values.substitute(settings.get("topicId")?.as_str()?, false),
        function: format!("{}-{function}", stack.stack),
        namespace: stack.namespace.clone(),
        max_wait: number("maxWait").unwrap_or(60),
        max_messages: number("maxMsgNum"),
    })
}

/// The `scf` component's trigger for one of ours.
fn trigger(kind: &str, settings: &Value, values: &Values, redact: bool) -> Result<Value, String> {
    let get = |key: &str| settings.get(key).cloned().unwrap_or(Value::Null);
    let text = |key: &str| values.value(get(key).as_str().unwrap_or(""), redact);
    Ok(match kind {
        "cls" => json!({"cls": {"parameters": {
            "topicId": text("topicId"), "maxWait": get("maxWait"), "enable": get("enable"), "qualifier": "$DEFAULT"}}}),
        "apigw" => json!({"apigw": {"parameters": {
            "protocols": ["https"], "environment": "release",
            "endpoints": [{"path": text("path"), "method": text("method"),
                "function": {"isIntegratedResponse": get("integratedResponse")}}]}}}),
        "http" => {
            let extranet = match get("extranet") {
                Value::String(s) => values.substitute(&s, false) == "true",
                other => other.as_bool().unwrap_or(false),
            };
            json!({"http": {"parameters": {
                "authType": text("authType"), "qualifier": "$DEFAULT",
                "netConfig": {"enableExtranet": extranet, "enableIntranet": true}}}})
        }
        "timer" => json!({"timer": {"parameters": {
            "cronExpression": text("cronExpression"), "enable": get("enable"), "qualifier": "$DEFAULT"}}}),
        other => return Err(format!("unknown trigger type {other:?}")),
    })
}

/// One function's generated files.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The function name as deployed (`<stack>-<function>`).
    pub name: String,
    /// `serverless.yml`.
    pub serverless_yml: String,
    /// The role's CAM policy document.
    pub policy_json: String,
}

/// Generates `serverless.yml` and the policy of `function`. `redact` hides secret values.
pub fn generate(
    stack: &Stack,
    function: &str,
    values: &Values,
    redact: bool,
) -> Result<Generated, String> {
    let f = stack
        .functions
        .get(function)
        .ok_or_else(|| format!("template.yaml has no function {function:?}"))?;
    let name = format!("{}-{function}", stack.stack);
    let text = |t: &str| values.value(t, redact);
    let environment: Map<String, Value> = f
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let mut inputs = json!({
        "name": name,
        "namespace": stack.namespace,
        "region": text(&stack.region),
        "description": f.description,
        "src": {"src": "./code"},
        "type": "event",
        "runtime": f.runtime,
        "handler": f.handler,
        "memorySize": f.memory_size,
        "timeout": f.timeout,
        "initTimeout": f.init_timeout,
        "role": f.role,
        "environment": {"variables": environment},
    });
    if let Some(vpc) = &f.vpc {
        let vpc_id = values.substitute(&vpc.vpc_id, false);
        if !vpc_id.is_empty() && !vpc_id.starts_with("<unset") {
            inputs["vpcConfig"] =
                json!({"vpcId": vpc_id, "subnetId": values.substitute(&vpc.subnet_id, false)});
        }
    }
    // retryNum and msgTTL are applied through the SCF API after the deploy
    // (`provision::ensure_async_retry`): the component sends them only with `asyncRunEnable`.
    if let Some(config) = &f.async_config {
        if let Some(dead) = &config.dead_letter {
            let queue = values.substitute(&dead.name, false);
            if !queue.is_empty() && !queue.starts_with("<unset") {
                inputs["deadLetter"] = json!({"type": dead.kind, "name": queue});
            }
        }
    }
    let mut events = Vec::new();
    for event in &f.events {
        // The CLS trigger stays declared to the component (it deletes a trigger it lists but
        // was not told of); its settings are applied after it by `provision::ensure_shipping`,
        // as the component's legacy `/deliverfunction` update only switches it on or off.
        for (kind, settings) in event {
            events.push(trigger(kind, settings, values, redact)?);
        }
    }
    inputs["events"] = Value::Array(events);
    let document = json!({"app": stack.stack, "component": "scf", "name": name, "inputs": inputs});
    let serverless_yml = format!(
        "# Generated from template.yaml by `esgflow deploy`; do not edit.\n{}",
        serde_yaml_ng::to_string(&document).map_err(|e| e.to_string())?
    );
    let policy = json!({
        "version": "2.0",
        "statement": f.policy.iter().map(|s| json!({
            "effect": s.effect,
            "action": s.action,
            "resource": s.resource.iter().map(|r| values.substitute(r, false)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Ok(Generated {
        name,
        serverless_yml,
        policy_json: serde_json::to_string_pretty(&policy).expect("JSON serializes"),
    })
}

/// Writes `out/<function>/serverless.yml`, `policy.json` and `code/bootstrap` (from the
/// function's package) for every function.
pub fn write_all(
    stack: &Stack,
    values: &Values,
    root: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let mut dirs = Vec::new();
    for function in stack.functions.keys() {
        let generated = generate(stack, function, values, false)?;
        let dir = out.join(function);
        let code = dir.join("code");
        std::fs::create_dir_all(&code).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("serverless.yml"), &generated.serverless_yml)
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("policy.json"), &generated.policy_json)
            .map_err(|e| e.to_string())?;
        let package = root.join(&stack.functions[function].package);
        let file = std::fs::File::open(&package)
            .map_err(|e| format!("{}: {e} (run `make package`)", package.display()))?;
        zip::ZipArchive::new(file)
            .and_then(|mut zip| zip.extract(&code))
            .map_err(|e| format!("{}: {e}", package.display()))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// The execution roles the stack needs, one per function: `template.yaml`'s role name, a policy
/// named `<role>-policy`, and the policy document with the parameters filled in.
pub fn role_specs(
    stack: &Stack,
    values: &Values,
) -> Result<Vec<super::provision::RoleSpec>, String> {
    stack
        .functions
        .iter()
        .map(|(name, function)| {
            let generated = generate(stack, name, values, false)?;
            Ok(super::provision::RoleSpec {
                name: function.role.clone(),
                policy_name: format!("{}-policy", function.role),
                policy: serde_json::from_str(&generated.policy_json)
                    .map_err(|e| format!("{name}'s policy: {e}"))?,
            })
        })
        .collect()
}
