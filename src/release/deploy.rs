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
        let mut names: Vec<String> = text
            .split("${")
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
            .collect();
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
        for name in stack.placeholders() {
            let parameter = stack.parameters.get(&name).ok_or_else(|| {
                format!("template.yaml uses ${{{name}}}, which `parameters` does not declare")
            })?;
            if parameter.secret {
                secrets.push(name.clone());
            }
            match lookup(&name).or_else(|| parameter.default.clone()) {
                Some(value) => {
                    values.insert(name, value);
                }
                None => missing.push(name),
            }
        }
        Ok(Self {
            values,
            missing,
            secrets,
        })
    }

    /// `text` with every placeholder replaced; a missing one becomes `<unset NAME>`, a secret
    /// one `<secret NAME>` when `redact` is set.
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
                Some(_) if redact && self.secrets.iter().any(|s| s == name) => {
                    out.push_str(&format!("<secret {name}>"))
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
        "http" => json!({"http": {"parameters": {
            "authType": text("authType"), "qualifier": "$DEFAULT",
            "netConfig": {"enableExtranet": get("extranet"), "enableIntranet": true}}}}),
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
    if let Some(config) = &f.async_config {
        inputs["retryNum"] = json!(config.retry_num);
        inputs["msgTTL"] = json!(config.msg_ttl);
        if let Some(dead) = &config.dead_letter {
            let queue = values.substitute(&dead.name, false);
            if !queue.is_empty() && !queue.starts_with("<unset") {
                inputs["deadLetter"] = json!({"type": dead.kind, "name": queue});
            }
        }
    }
    let mut events = Vec::new();
    for event in &f.events {
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
