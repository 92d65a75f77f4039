//! The engine as bytes (an *image*): what the sync function publishes beside each snapshot, so
//! a cold start loads the compiled engine instead of parsing, checking and compiling the
//! snapshot (the reference account's 20,000 rules: docs/performance.md, "Cold start").
//!
//! An image is [`MAGIC`], this build's [`FORMAT`], the XXH3-128 of the payload, then the payload:
//! the [`Engine`](super::Engine) in postcard (<https://postcard.jamesmunns.com/wire-format>).
//! An image is read only by a build of the same engine source: [`FORMAT`] is a hash of the files
//! that declare what it holds, so a build with other types refuses it (and its reader falls back
//! to the snapshot) instead of misreading it. The checksum refuses a damaged or altered payload,
//! as a snapshot's version refuses altered content. It guards against damage, not against a
//! writer of the store (who could write any snapshot too), so it is a fast non-cryptographic
//! hash: XXH3-128 reads the reference account's 6.8 MB image in a tenth of SHA-256's time.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_128;

use super::Engine;

use crate::core::snapshot::{Endpoint, EndpointKind, Generation, Rule, RuleAction, RuleAttributes};

/// A rule with every field written, in order: the snapshot's own form leaves defaults out
/// (`skip_serializing_if`) and flattens its attributes, which a format without field names
/// cannot read back.
#[derive(Serialize, Deserialize)]
struct PlainRule {
    uuid: String,
    order: u64,
    generation: Generation,
    action: RuleAction,
    enabled: bool,
    source: PlainEndpoint,
    destination: PlainEndpoint,
    protocol: String,
    port: String,
    service_template: Option<String>,
    description: String,
    region: Option<String>,
    scope: String,
    partition: Option<u8>,
    delayed: bool,
    both_ways: bool,
    unreadable: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct PlainEndpoint {
    kind: EndpointKind,
    content: String,
    resolved: Vec<String>,
}

impl From<&Endpoint> for PlainEndpoint {
    fn from(e: &Endpoint) -> Self {
        Self {
            kind: e.kind,
            content: e.content.clone(),
            resolved: e.resolved.clone(),
        }
    }
}

impl From<PlainEndpoint> for Endpoint {
    fn from(e: PlainEndpoint) -> Self {
        Self {
            kind: e.kind,
            content: e.content,
            resolved: e.resolved,
        }
    }
}

/// `#[serde(with)]` for a [`Rule`] in an image.
pub(super) mod plain_rule {
    use super::*;

    pub fn serialize<S: Serializer>(rule: &Rule, serializer: S) -> Result<S::Ok, S::Error> {
        let a = &rule.attributes;
        PlainRule {
            uuid: rule.uuid.clone(),
            order: rule.order,
            generation: rule.generation,
            action: rule.action,
            enabled: rule.enabled,
            source: (&rule.source).into(),
            destination: (&rule.destination).into(),
            protocol: rule.protocol.clone(),
            port: rule.port.clone(),
            service_template: rule.service_template.clone(),
            description: rule.description.clone(),
            region: a.region.clone(),
            scope: a.scope.clone(),
            partition: a.partition,
            delayed: a.delayed,
            both_ways: a.both_ways,
            unreadable: a.unreadable.clone(),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Rule, D::Error> {
        let p = PlainRule::deserialize(deserializer)?;
        Ok(Rule {
            uuid: p.uuid,
            order: p.order,
            generation: p.generation,
            action: p.action,
            enabled: p.enabled,
            source: p.source.into(),
            destination: p.destination.into(),
            protocol: p.protocol,
            port: p.port,
            service_template: p.service_template,
            description: p.description,
            attributes: RuleAttributes {
                region: p.region,
                scope: p.scope,
                partition: p.partition,
                delayed: p.delayed,
                both_ways: p.both_ways,
                unreadable: p.unreadable,
            },
        })
    }
}

/// `#[serde(with)]` for a long vector in an image: read into one allocation of its length.
/// Serde's own `Vec` reads at most 1 MiB ahead of what it has read, then grows by copying (the
/// reference account's rules: 20,000 of about 500 bytes). The length is believed up to
/// [`exact_vec::MAX`] elements: an image is read only after its checksum.
pub(super) mod exact_vec {
    use super::*;
    use serde::de::{SeqAccess, Visitor};

    /// The most elements reserved ahead.
    pub const MAX: usize = 1 << 20;

    pub fn serialize<S: Serializer, T: Serialize>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct Exact<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Exact<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(Exact(std::marker::PhantomData))
    }
}

/// What every image starts with.
const MAGIC: &[u8; 8] = b"ESGFENG\0";

/// The files declaring every type an image holds, and the crate's version.
const SOURCES: [&[u8]; 7] = [
    include_bytes!("mod.rs"),
    include_bytes!("index.rs"),
    include_bytes!("topology.rs"),
    include_bytes!("image.rs"),
    include_bytes!("../snapshot/mod.rs"),
    include_bytes!("../snapshot/values.rs"),
    env!("CARGO_PKG_VERSION").as_bytes(),
];

/// This build's image format: FNV-1a over [`SOURCES`].
pub(crate) const FORMAT: u64 = fnv1a(&SOURCES);

const fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut part = 0;
    while part < parts.len() {
        let bytes = parts[part];
        let mut at = 0;
        while at < bytes.len() {
            hash ^= bytes[at] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            at += 1;
        }
        part += 1;
    }
    hash
}

/// Bytes before the payload: magic, format, checksum.
const HEADER: usize = 8 + 8 + 16;

/// The name of the image of snapshot `version` in a store (this build's format in it: a
/// pointer naming another build's image names none this build reads).
pub(crate) fn image_object(version: &str) -> String {
    format!("{version}.{FORMAT:016x}.engine")
}

impl Engine {
    /// The engine as an image.
    pub fn to_image(&self) -> Vec<u8> {
        let payload = postcard::to_stdvec(self).expect("an engine serializes");
        let mut image = Vec::with_capacity(HEADER + payload.len());
        image.extend_from_slice(MAGIC);
        image.extend_from_slice(&FORMAT.to_le_bytes());
        image.extend_from_slice(&xxh3_128(&payload).to_le_bytes());
        image.extend_from_slice(&payload);
        image
    }

    /// The engine of an image of snapshot `version`; `Err` says why it cannot be used (not an
    /// image, another build's, damaged, or of another version).
    pub fn from_image(image: &[u8], version: &str) -> Result<Self, String> {
        if image.len() < HEADER || &image[..8] != MAGIC {
            return Err("not an engine image".to_string());
        }
        let format = u64::from_le_bytes(image[8..16].try_into().expect("8 bytes"));
        if format != FORMAT {
            return Err(format!(
                "written by another build (format {format:016x}; this build reads {FORMAT:016x})"
            ));
        }
        let payload = &image[HEADER..];
        if xxh3_128(payload).to_le_bytes()[..] != image[16..HEADER] {
            return Err("its checksum does not match: it was damaged or altered".to_string());
        }
        let engine: Engine =
            postcard::from_bytes(payload).map_err(|e| format!("unreadable: {e}"))?;
        if engine.version != version {
            return Err(format!(
                "it holds version {}, not {version}",
                engine.version
            ));
        }
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures::sample;

    #[test]
    fn an_image_is_refused_unless_whole_of_this_build_and_of_the_version() {
        let snapshot = sample(0);
        let engine = Engine::compile(&snapshot).unwrap();
        let image = engine.to_image();
        let loaded = Engine::from_image(&image, &snapshot.version).unwrap();
        assert_eq!(loaded.to_image(), image);
        assert_eq!(loaded.rules().len(), engine.rules().len());

        let refused = |image: &[u8], version: &str| Engine::from_image(image, version).unwrap_err();
        assert!(refused(b"{\"version\":1}", &snapshot.version).contains("not an engine image"));
        assert!(refused(&image[..HEADER - 1], &snapshot.version).contains("not an engine image"));
        let mut other_build = image.clone();
        other_build[8] ^= 1;
        assert!(refused(&other_build, &snapshot.version).contains("another build"));
        // A byte changed anywhere in the payload: a rule's action, an index word.
        for at in [HEADER, HEADER + (image.len() - HEADER) / 2, image.len() - 1] {
            let mut damaged = image.clone();
            damaged[at] ^= 0x20;
            assert!(
                refused(&damaged, &snapshot.version).contains("checksum"),
                "{at}"
            );
        }
        assert!(refused(&image[..image.len() - 1], &snapshot.version).contains("checksum"));
        assert!(refused(&image, "0123456789abcdef").contains("holds version"));
    }

    #[test]
    fn rules_keep_every_field_through_an_image() {
        let mut snapshot = sample(0);
        let rule = &mut snapshot.rules[0];
        rule.attributes.region = Some("ap-guangzhou".into());
        rule.attributes.scope = "SG,LH".into();
        rule.attributes.partition = Some(2);
        rule.attributes.delayed = true;
        rule.attributes.both_ways = true;
        rule.attributes
            .unreadable
            .insert("Port".into(), "not a port".into());
        rule.source.resolved = vec!["10.0.0.1".into()];
        rule.service_template = Some("ppm-1".into());
        snapshot.seal();
        let engine = Engine::compile(&snapshot).unwrap();
        let loaded = Engine::from_image(&engine.to_image(), &snapshot.version).unwrap();
        for (a, b) in engine.rules().iter().zip(loaded.rules()) {
            assert_eq!(a.rule, b.rule);
            assert_eq!(
                (
                    &a.source,
                    &a.destination,
                    &a.services,
                    &a.services_label,
                    &a.doubt
                ),
                (
                    &b.source,
                    &b.destination,
                    &b.services,
                    &b.services_label,
                    &b.doubt
                )
            );
        }
    }
}
