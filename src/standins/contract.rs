//! The official contract of every Tencent Cloud API 3.0 action a stand-in serves, read from the
//! API definitions the official CLI ships (`tccli`, PyPI: `tccli/services/<service>/<version>/
//! api.json` and `examples.json`), so a stand-in refuses what the real service refuses.
//!
//! The definitions are read straight from the pinned `tccli` wheel that `make setup-test` downloads
//! into `.tools/` (never copied into the repository). [`Definitions::validate`] answers a request
//! body the way API 3.0 does: an action the service does not have is `InvalidAction`, a missing
//! required member `MissingParameter`, a member the definition does not name `UnknownParameter`,
//! and a value of the wrong JSON type, at any depth, `InvalidParameter`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The `tccli` version the contracts are pinned to (`make setup-test` downloads this wheel).
pub const TCCLI_VERSION: &str = "3.1.189.1";

/// The largest definition file read from the wheel (cfw's `api.json` is about 1 MB).
const MAX_DEFINITION_BYTES: u64 = 64 * 1024 * 1024;

/// Where the pinned wheel is: `ESGFLOW_TCCLI_WHEEL`, else `.tools/` in the repository.
pub fn wheel_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ESGFLOW_TCCLI_WHEEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools")
        .join(format!("tccli-{TCCLI_VERSION}-py2.py3-none-any.whl"))
}

/// The definitions of `service` at an API version as `X-TC-Version` names it (`2019-09-04`).
pub fn definitions(service: &str, version: &str) -> Result<&'static Definitions, String> {
    Definitions::of(service, &format!("v{}", version.replace('-', "")))
}

/// Checks an API 3.0 request against its definition: the service it was signed for, the
/// `X-TC-Version` it names, its `X-TC-Action` and its body.
pub fn check(headers: &axum::http::HeaderMap, action: &str, body: &Value) -> Result<(), Refusal> {
    let service = super::signed_service(headers);
    let version = super::header(headers, "x-tc-version");
    let definitions = definitions(service, version).map_err(|problem| Refusal {
        code: "InvalidAction",
        message: format!("no definition of {service} version {version:?}: {problem}"),
    })?;
    definitions.validate(action, body)
}

/// A request the definition refuses, as API 3.0 answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code (`InvalidAction`, `MissingParameter`, `UnknownParameter`,
    /// `InvalidParameter`).
    pub code: &'static str,
    /// What was wrong, naming the member by its path.
    pub message: String,
}

/// A request sent as form fields, read by [`Definitions::from_form`].
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    /// The JSON body the fields the definition names stand for.
    pub body: Value,
    /// The fields it does not name, as sent (`ShowTriggers`, `Options.Extra`).
    pub undocumented: Vec<String>,
}

/// One member of a request object.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    required: bool,
    /// `string`, `int`, `bool`, `float`, `list` or `object`.
    kind: String,
    /// The precise type: `uint64`, `int64`, `string`…, or an object's name.
    member: String,
}

/// The definitions of one service version: its actions and the objects they use.
#[derive(Debug)]
pub struct Definitions {
    service: String,
    /// Action → its input object's name.
    inputs: BTreeMap<String, String>,
    objects: BTreeMap<String, Vec<Member>>,
    /// Action → the official example responses (`Response` objects).
    examples: BTreeMap<String, Vec<Value>>,
}

impl Definitions {
    /// The definitions of `service` at `version` (e.g. `cfw`, `v20190904`) from the pinned wheel,
    /// read once per process.
    pub fn of(service: &str, version: &str) -> Result<&'static Definitions, String> {
        static LOADED: OnceLock<std::sync::Mutex<BTreeMap<String, &'static Definitions>>> =
            OnceLock::new();
        let key = format!("{service}/{version}");
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .expect("no panic while loading definitions");
        if let Some(definitions) = loaded.get(&key) {
            return Ok(definitions);
        }
        let definitions: &'static Definitions =
            Box::leak(Box::new(Self::load(&wheel_path(), service, version)?));
        loaded.insert(key, definitions);
        Ok(definitions)
    }

    /// Reads `service`/`version` from the wheel at `wheel`.
    pub fn load(wheel: &Path, service: &str, version: &str) -> Result<Definitions, String> {
        let file = std::fs::File::open(wheel).map_err(|e| {
            format!(
                "the official API definitions (tccli {TCCLI_VERSION}) are not at {}: {e}; run `make setup-test`",
                wheel.display()
            )
        })?;
        let mut archive =
            zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
        let mut read = |name: &str| -> Result<Value, String> {
            let path = format!("tccli/services/{service}/{version}/{name}");
            let entry = archive
                .by_name(&path)
                .map_err(|e| format!("{path} in {}: {e}", wheel.display()))?;
            let mut text = String::new();
            entry
                .take(MAX_DEFINITION_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| format!("{path}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
        };
        let api = read("api.json")?;
        let examples = read("examples.json")?;
        Self::from_documents(service, &api, &examples)
    }

    /// The definitions in an `api.json` and an `examples.json` document.
    pub fn from_documents(
        service: &str,
        api: &Value,
        examples: &Value,
    ) -> Result<Definitions, String> {
        let actions = api["actions"]
            .as_object()
            .ok_or("api.json has no actions")?;
        let inputs = actions
            .iter()
            .filter_map(|(name, action)| {
                Some((name.clone(), action["input"].as_str()?.to_string()))
            })
            .collect();
        let objects = api["objects"]
            .as_object()
            .ok_or("api.json has no objects")?
            .iter()
            .map(|(name, object)| {
                let members = object["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| Member {
                        name: m["name"].as_str().unwrap_or_default().to_string(),
                        required: m["required"].as_bool().unwrap_or(false),
                        kind: m["type"].as_str().unwrap_or_default().to_string(),
                        member: m["member"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect();
                (name.clone(), members)
            })
            .collect();
        let examples = examples["actions"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(action, list)| {
                let responses = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|example| example["output"].as_str())
                    .filter_map(|output| serde_json::from_str::<Value>(output).ok())
                    .filter_map(|output| output.get("Response").cloned())
                    .collect();
                (action.clone(), responses)
            })
            .collect();
        Ok(Definitions {
            service: service.to_string(),
            inputs,
            objects,
            examples,
        })
    }

    /// Whether the service has `action`.
    pub fn has(&self, action: &str) -> bool {
        self.inputs.contains_key(action)
    }

    /// The official example responses of `action` (its `Response` objects).
    pub fn examples(&self, action: &str) -> &[Value] {
        self.examples.get(action).map_or(&[], Vec::as_slice)
    }

    /// Checks a request body of `action` against its definition.
    pub fn validate(&self, action: &str, body: &Value) -> Result<(), Refusal> {
        let input = self.input(action)?;
        self.check_object(input, body, "")
    }

    /// The body of `action` sent the API 2.0 way (signature v1: form fields, members of lists and
    /// objects flattened as `Filters.0.Name`), typed by the definition so it can be validated as
    /// a JSON body is: a value that does not read as its type is `InvalidParameter`. Fields the
    /// definition does not name are left out of the body and listed, for the caller to refuse
    /// or not. Common fields (`Action`, `Nonce`…) are the caller's to remove first.
    pub fn from_form(&self, action: &str, fields: &[(String, String)]) -> Result<Form, Refusal> {
        let input = self.input(action)?;
        let mut form = Form {
            body: Value::Object(Default::default()),
            undocumented: vec![],
        };
        for (name, text) in fields {
            let path: Vec<&str> = name.split('.').collect();
            if !self.place(input, &mut form.body, &path, text, name)? {
                form.undocumented.push(name.clone());
            }
        }
        Ok(form)
    }

    fn input(&self, action: &str) -> Result<&str, Refusal> {
        self.inputs
            .get(action)
            .map(String::as_str)
            .ok_or_else(|| Refusal {
                code: "InvalidAction",
                message: format!(
                    "The action `{action}` is not found in service `{}`.",
                    self.service
                ),
            })
    }

    /// Puts one flattened field (`path`, relative to an `object`) into `target`; false if the
    /// definition does not name it.
    fn place(
        &self,
        object: &str,
        target: &mut Value,
        path: &[&str],
        text: &str,
        full: &str,
    ) -> Result<bool, Refusal> {
        let Some(member) = self
            .objects
            .get(object)
            .and_then(|members| members.iter().find(|m| m.name == path[0]))
        else {
            return Ok(false);
        };
        let Some(fields) = target.as_object_mut() else {
            return Err(invalid(full, "a member of an object"));
        };
        if member.kind == "list" {
            let index: usize = path
                .get(1)
                .and_then(|i| i.parse().ok())
                .filter(|i| *i < 1000)
                .ok_or_else(|| invalid(full, "a list member `Name.N`"))?;
            let list = fields
                .entry(member.name.clone())
                .or_insert_with(|| Value::Array(vec![]));
            let Some(items) = list.as_array_mut() else {
                return Err(invalid(full, "a member of a list"));
            };
            if items.len() <= index {
                items.resize(index + 1, Value::Null);
            }
            return self.place_value(&member.member, &mut items[index], &path[2..], text, full);
        }
        let slot = fields.entry(member.name.clone()).or_insert(Value::Null);
        self.place_value(&member.member, slot, &path[1..], text, full)
    }

    /// Puts a value of type `kind` into `slot`: a scalar read from `text`, or, for an object,
    /// the field `rest` names inside it; false if the definition does not name that.
    fn place_value(
        &self,
        kind: &str,
        slot: &mut Value,
        rest: &[&str],
        text: &str,
        full: &str,
    ) -> Result<bool, Refusal> {
        if self.objects.contains_key(kind) {
            if rest.is_empty() {
                return Err(invalid(full, "an object"));
            }
            if slot.is_null() {
                *slot = Value::Object(Default::default());
            }
            return self.place(kind, slot, rest, text, full);
        }
        if !rest.is_empty() {
            return Ok(false);
        }
        let value = match kind {
            "uint64" | "uint32" => text.parse::<u64>().ok().map(Value::from),
            "int64" | "int32" | "int" => text.parse::<i64>().ok().map(Value::from),
            "float" | "double" => text.parse::<f64>().ok().map(Value::from),
            "bool" => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => Some(Value::String(text.to_string())),
        };
        *slot = value.ok_or_else(|| invalid(full, &format!("of type {kind}")))?;
        Ok(true)
    }

    fn check_object(&self, object: &str, value: &Value, path: &str) -> Result<(), Refusal> {
        let members = self.objects.get(object).map_or(&[][..], Vec::as_slice);
        let Some(fields) = value.as_object() else {
            return Err(invalid(path, "an object"));
        };
        for member in members.iter().filter(|m| m.required) {
            if fields.get(&member.name).is_none_or(Value::is_null) {
                return Err(Refusal {
                    code: "MissingParameter",
                    message: format!(
                        "The request is missing a required parameter `{}`.",
                        join(path, &member.name)
                    ),
                });
            }
        }
        for (name, field) in fields {
            let Some(member) = members.iter().find(|m| &m.name == name) else {
                return Err(Refusal {
                    code: "UnknownParameter",
                    message: format!("The parameter `{}` is not recognized.", join(path, name)),
                });
            };
            self.check_member(member, field, &join(path, name))?;
        }
        Ok(())
    }

    fn check_member(&self, member: &Member, value: &Value, path: &str) -> Result<(), Refusal> {
        if value.is_null() {
            return Ok(());
        }
        match member.kind.as_str() {
            "list" => {
                let items = value.as_array().ok_or_else(|| invalid(path, "an array"))?;
                for (index, item) in items.iter().enumerate() {
                    self.check_scalar_or_object(&member.member, item, &format!("{path}.{index}"))?;
                }
                Ok(())
            }
            "object" => self.check_object(&member.member, value, path),
            _ => self.check_scalar_or_object(&member.member, value, path),
        }
    }

    /// `kind` is a precise scalar type or an object's name.
    fn check_scalar_or_object(&self, kind: &str, value: &Value, path: &str) -> Result<(), Refusal> {
        let fits = match kind {
            "string" => value.is_string(),
            "uint64" | "uint32" => value.is_u64(),
            "int64" | "int32" | "int" => value.is_i64() || value.is_u64(),
            "float" | "double" => value.is_number(),
            "bool" => value.is_boolean(),
            object if self.objects.contains_key(object) => {
                return self.check_object(object, value, path)
            }
            // A type the definitions use that this checker does not know: accept anything.
            _ => true,
        };
        if fits {
            Ok(())
        } else {
            Err(invalid(path, &format!("of type {kind}")))
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn invalid(path: &str, expected: &str) -> Refusal {
    Refusal {
        code: "InvalidParameter",
        message: format!("The value of parameter `{path}` is not {expected}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definitions() -> Definitions {
        let api = json!({
            "actions": {"DescribeThings": {"input": "DescribeThingsRequest", "output": "DescribeThingsResponse"}},
            "objects": {
                "DescribeThingsRequest": {"members": [
                    {"name": "Direction", "required": true, "type": "int", "member": "uint64"},
                    {"name": "Area", "required": true, "type": "string", "member": "string"},
                    {"name": "Filters", "required": false, "type": "list", "member": "Filter"},
                    {"name": "Options", "required": false, "type": "object", "member": "Options"}
                ]},
                "Filter": {"members": [
                    {"name": "Name", "required": true, "type": "string", "member": "string"},
                    {"name": "Values", "required": true, "type": "list", "member": "string"}
                ]},
                "Options": {"members": [
                    {"name": "Deep", "required": false, "type": "bool", "member": "bool"}
                ]}
            }
        });
        let examples = json!({"actions": {"DescribeThings": [
            {"output": "{\"Response\": {\"Total\": 1, \"RequestId\": \"x\"}}"}
        ]}});
        Definitions::from_documents("thing", &api, &examples).unwrap()
    }

    #[test]
    fn refuses_each_class_of_bad_request() {
        let d = definitions();
        let good = json!({"Direction": 1, "Area": "ap-guangzhou",
            "Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}], "Options": {"Deep": true}});
        assert_eq!(d.validate("DescribeThings", &good), Ok(()));
        let code = |action: &str, body: Value| d.validate(action, &body).unwrap_err().code;
        assert_eq!(code("DescribeOther", json!({})), "InvalidAction");
        assert_eq!(
            code("DescribeThings", json!({"Direction": 1})),
            "MissingParameter"
        );
        assert_eq!(
            code(
                "DescribeThings",
                json!({"Direction": 1, "Area": "a", "Extra": 1})
            ),
            "UnknownParameter"
        );
        // The old-ESG mistake: Direction as a string.
        let refusal = d
            .validate("DescribeThings", &json!({"Direction": "1", "Area": "a"}))
            .unwrap_err();
        assert_eq!(refusal.code, "InvalidParameter");
        assert!(
            refusal.message.contains("`Direction`"),
            "{}",
            refusal.message
        );
        assert_eq!(
            code("DescribeThings", json!({"Direction": -1, "Area": "a"})),
            "InvalidParameter"
        );
        // Wrong types and unknown or missing members at depth.
        let deep = d
            .validate(
                "DescribeThings",
                &json!({"Direction": 1, "Area": "a", "Filters": [{"Name": "x", "Values": [1]}]}),
            )
            .unwrap_err();
        assert_eq!(
            (deep.code, deep.message.contains("`Filters.0.Values.0`")),
            ("InvalidParameter", true)
        );
        assert_eq!(
            code(
                "DescribeThings",
                json!({"Direction": 1, "Area": "a", "Filters": [{"Name": "x"}]})
            ),
            "MissingParameter"
        );
        assert_eq!(
            code(
                "DescribeThings",
                json!({"Direction": 1, "Area": "a", "Options": {"Nope": 1}})
            ),
            "UnknownParameter"
        );
        assert_eq!(
            code(
                "DescribeThings",
                json!({"Direction": 1, "Area": "a", "Filters": {"Name": "x"}})
            ),
            "InvalidParameter"
        );
        assert_eq!(
            d.examples("DescribeThings"),
            [json!({"Total": 1, "RequestId": "x"})]
        );
    }

    /// A request sent the API 2.0 way reads back as the JSON body it stands for, typed by the
    /// definition; a value not of its type is refused; what the definition does not name is
    /// listed apart.
    #[test]
    fn form_fields_read_as_the_body_they_flatten() {
        let d = definitions();
        let fields = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let form = d
            .from_form(
                "DescribeThings",
                &fields(&[
                    ("Direction", "1"),
                    ("Area", "ap-guangzhou"),
                    ("Filters.0.Name", "vpc-id"),
                    ("Filters.0.Values.1", "vpc-2"),
                    ("Filters.0.Values.0", "vpc-1"),
                    ("Options.Deep", "true"),
                    ("Options.Shallow", "true"),
                    ("Extra", "1"),
                ]),
            )
            .unwrap();
        let body = form.body;
        assert_eq!(form.undocumented, ["Options.Shallow", "Extra"]);
        assert_eq!(
            body,
            json!({"Direction": 1, "Area": "ap-guangzhou",
                "Filters": [{"Name": "vpc-id", "Values": ["vpc-1", "vpc-2"]}], "Options": {"Deep": true}})
        );
        assert_eq!(d.validate("DescribeThings", &body), Ok(()));
        let code = |pairs: &[(&str, &str)]| {
            d.from_form("DescribeThings", &fields(pairs))
                .and_then(|form| d.validate("DescribeThings", &form.body))
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(&[("Direction", "north"), ("Area", "a")]),
            "InvalidParameter"
        );
        assert_eq!(
            code(&[("Direction", "1"), ("Area", "a"), ("Options.Deep", "yes")]),
            "InvalidParameter"
        );
        assert_eq!(
            code(&[("Direction", "1"), ("Area", "a"), ("Filters.x.Name", "n")]),
            "InvalidParameter"
        );
        // A list with a gap: item 0 was never sent.
        assert_eq!(
            code(&[
                ("Direction", "1"),
                ("Area", "a"),
                ("Filters.1.Name", "n"),
                ("Filters.1.Values.0", "v")
            ]),
            "InvalidParameter"
        );
        assert_eq!(code(&[("Area", "a")]), "MissingParameter");
        assert_eq!(
            d.from_form("DescribeOther", &[]).unwrap_err().code,
            "InvalidAction"
        );
    }
}
