//! The OpenSSF model-signing bundle: a Sigstore bundle (media type v0.3) holding a DSSE
//! envelope over an in-toto Statement v1 with the `https://model_signing/signature/v1.0`
//! predicate (each file's SHA-256), signed with an ECDSA P-256 key; mvault adds
//! `predicate.mvault`, which binds the exact manifest bytes (model-signing 1.1.1 ignores
//! unknown predicate fields, as its v1.0 predicate specifies).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::keys::{PublicKey, SignKey, TrustedKeys};
use super::{Error, Result};
use crate::manifest::Manifest;

/// Sigstore bundle media type model-signing 1.1.1 writes and requires.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths model-signing skips when it hashes the directory: mvault's own records in a target.
const IGNORE_PATHS: &[&str] = &[".mvault"];

/// One file's SHA-256, computed at push time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSha256 {
    /// The manifest path.
    pub path: String,
    pub sha256: [u8; 32],
}

/// A signature that verified: who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the trusted key that made it.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: KeyHint,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct KeyHint {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    /// Base64 of the statement's JSON bytes.
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    /// Base64 of the DER ECDSA signature over PAE(payload).
    sig: String,
    #[serde(default)]
    keyid: String,
}

#[derive(Serialize, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: Sha256Digest,
}

#[derive(Serialize, Deserialize)]
struct Sha256Digest {
    sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<Resource>,
    /// Absent in bundles other tools make: mvault refuses those (they do not bind a manifest).
    #[serde(default)]
    mvault: Option<Binding>,
}

#[derive(Serialize, Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    allow_symlinks: bool,
    ignore_paths: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

/// What mvault adds to the predicate: the version and its manifest's exact bytes.
#[derive(Serialize, Deserialize)]
struct Binding {
    model_name: String,
    /// As in the manifest (a leading `v` kept).
    version: String,
    /// Lower-case hex SHA-256 of the manifest object's bytes.
    manifest_sha256: String,
}

/// DSSE pre-authentication encoding: `DSSEv1 <len type> <type> <len payload> <payload>`
/// (lengths in decimal ASCII bytes).
fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// SHA-256 over the concatenated 32-byte resource digests, in the order listed: the
/// statement's subject digest.
fn root_digest<'a>(digests: impl Iterator<Item = &'a [u8]>) -> String {
    let mut h = sha2::Sha256::new();
    for d in digests {
        h.update(d);
    }
    hex::encode(h.finalize())
}

/// The statement mvault signs for `manifest` (whose exact bytes are `manifest_bytes`), as
/// JSON bytes. `files` are the manifest's files, in its order.
fn statement(manifest_bytes: &[u8], manifest: &Manifest, files: &[FileSha256]) -> Vec<u8> {
    debug_assert!(
        files.len() == manifest.files.len()
            && files
                .iter()
                .zip(&manifest.files)
                .all(|(a, b)| a.path == b.path)
    );
    let s = Statement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: manifest.model_name.clone(),
            digest: Sha256Digest {
                sha256: root_digest(files.iter().map(|f| &f.sha256[..])),
            },
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            serialization: Serialization {
                method: "files".into(),
                hash_type: "sha256".into(),
                allow_symlinks: false,
                ignore_paths: IGNORE_PATHS.iter().map(|s| s.to_string()).collect(),
            },
            resources: files
                .iter()
                .map(|f| Resource {
                    name: f.path.clone(),
                    algorithm: "sha256".into(),
                    digest: hex::encode(f.sha256),
                })
                .collect(),
            mvault: Some(Binding {
                model_name: manifest.model_name.clone(),
                version: manifest.version.clone(),
                manifest_sha256: hex::encode(sha2::Sha256::digest(manifest_bytes)),
            }),
        },
    };
    serde_json::to_vec_pretty(&s).expect("statement serializes")
}

/// The signature object for a version: the bundle's JSON bytes (compact, as model-signing
/// writes it).
pub fn sign(
    key: &SignKey,
    manifest_bytes: &[u8],
    manifest: &Manifest,
    files: &[FileSha256],
) -> Vec<u8> {
    let payload = statement(manifest_bytes, manifest, files);
    let sig = key.sign_der(&pae(&payload));
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: KeyHint {
                hint: Some(key.public().fingerprint().to_string()),
            },
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Envelope {
            payload: B64.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: B64.encode(sig),
                keyid: String::new(),
            }],
        },
    };
    serde_json::to_vec(&bundle).expect("bundle serializes")
}

fn parse_bundle(bytes: &[u8], version: &str) -> Result<Bundle> {
    let bad = |reason: String| Error::BadSignature {
        version: version.to_string(),
        reason,
    };
    let b: Bundle =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a sigstore bundle: {e}")))?;
    if b.media_type != BUNDLE_MEDIA_TYPE {
        return Err(bad(format!(
            "bundle media type {:?}, expected {BUNDLE_MEDIA_TYPE}",
            b.media_type
        )));
    }
    Ok(b)
}

/// The signer fingerprint a bundle claims (`verificationMaterial.publicKey.hint`), unverified;
/// `None` if it names none.
pub fn bundle_hint(bytes: &[u8], version: &str) -> Result<Option<String>> {
    Ok(parse_bundle(bytes, version)?
        .verification_material
        .public_key
        .hint
        .filter(|h| !h.is_empty()))
}

/// Verifies the signature object `bytes` of `version` (`name@version`, for messages) against
/// the manifest `manifest` whose exact bytes are `manifest_bytes`, accepting only `trusted`
/// signers. Order: bundle shape; the key (the hint's fingerprint among the trusted keys, or
/// with no hint each trusted key); the ECDSA signature over PAE(payload); then the statement:
/// types, one subject, the mvault binding (name, version, SHA-256 of the manifest bytes), the
/// resources (exactly the manifest's paths in its order, SHA-256 each) and the subject digest.
pub fn verify(
    bytes: &[u8],
    manifest_bytes: &[u8],
    manifest: &Manifest,
    trusted: &TrustedKeys,
    version: &str,
) -> Result<Verified> {
    let bad = |reason: String| Error::BadSignature {
        version: version.to_string(),
        reason,
    };
    let b = parse_bundle(bytes, version)?;
    let env = &b.dsse_envelope;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(bad(format!("payload type {:?}", env.payload_type)));
    }
    let [sig] = &env.signatures[..] else {
        return Err(bad(format!(
            "{} signatures in the envelope, expected 1",
            env.signatures.len()
        )));
    };
    let payload = B64
        .decode(&env.payload)
        .map_err(|e| bad(format!("payload is not base64: {e}")))?;
    let der = B64
        .decode(&sig.sig)
        .map_err(|e| bad(format!("signature is not base64: {e}")))?;
    let hint = b
        .verification_material
        .public_key
        .hint
        .filter(|h| !h.is_empty());
    let candidates: Vec<&PublicKey> = trusted
        .keys()
        .iter()
        .filter(|k| hint.as_deref().is_none_or(|h| h == k.fingerprint()))
        .collect();
    if candidates.is_empty() {
        return Err(Error::UnknownSigner {
            version: version.to_string(),
            fingerprint: hint.unwrap_or_default(),
        });
    }
    let message = pae(&payload);
    let Some(key) = candidates.into_iter().find(|k| k.verifies(&message, &der)) else {
        return Err(bad(
            "the ECDSA signature does not verify (the object was altered, or forged)".into(),
        ));
    };
    check_statement(&payload, manifest_bytes, manifest).map_err(bad)?;
    Ok(Verified {
        fingerprint: key.fingerprint().to_string(),
    })
}

/// The checks of a verified statement against the manifest; the reason on failure.
fn check_statement(
    payload: &[u8],
    manifest_bytes: &[u8],
    manifest: &Manifest,
) -> std::result::Result<(), String> {
    let s: Statement =
        serde_json::from_slice(payload).map_err(|e| format!("statement does not parse: {e}"))?;
    if s.type_ != STATEMENT_TYPE || s.predicate_type != PREDICATE_TYPE {
        return Err(format!(
            "statement type {:?} / predicate {:?}",
            s.type_, s.predicate_type
        ));
    }
    let [subject] = &s.subject[..] else {
        return Err(format!("{} subjects, expected 1", s.subject.len()));
    };
    let binding = s
        .predicate
        .mvault
        .as_ref()
        .ok_or("the statement binds no mvault manifest (signed by another tool?)")?;
    let manifest_sha256 = hex::encode(sha2::Sha256::digest(manifest_bytes));
    if binding.manifest_sha256 != manifest_sha256 {
        return Err(format!(
            "signed for a manifest with SHA-256 {}, but the manifest's is {manifest_sha256} \
             (the manifest was altered after signing)",
            binding.manifest_sha256
        ));
    }
    if binding.model_name != manifest.model_name || binding.version != manifest.version {
        return Err(format!(
            "signed for {}@{}",
            binding.model_name, binding.version
        ));
    }
    let r = &s.predicate.resources;
    let paths_match = r.len() == manifest.files.len()
        && r.iter().zip(&manifest.files).all(|(r, f)| r.name == f.path);
    if !paths_match {
        return Err("the signed file list differs from the manifest's".into());
    }
    let mut digests = Vec::with_capacity(r.len());
    for res in r {
        let d = (res.algorithm == "sha256")
            .then(|| hex::decode(&res.digest).ok())
            .flatten()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| format!("{}: not a SHA-256 digest", res.name))?;
        digests.push(d);
    }
    if subject.digest.sha256 != root_digest(digests.iter().map(|d| &d[..])) {
        return Err("the subject digest does not match the resources".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// The committed fixture: a manifest, its signature made by `signing.key` (ECDSA
    /// signatures are randomized, so the test checks verification of fixed bytes).
    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/signing");

    fn fixture() -> (Vec<u8>, Manifest, Vec<u8>, TrustedKeys) {
        let manifest_bytes = std::fs::read(format!("{FIXTURE}/manifest.json")).unwrap();
        let m = Manifest::from_json(&manifest_bytes).unwrap();
        let sig = std::fs::read(format!("{FIXTURE}/manifest.sig")).unwrap();
        let keys = TrustedKeys::load(&[format!("{FIXTURE}/signing.key.pub")]).unwrap();
        (manifest_bytes, m, sig, keys)
    }

    #[test]
    fn golden_bundle_verifies() {
        let (bytes, m, sig, keys) = fixture();
        let v = verify(&sig, &bytes, &m, &keys, "fixture").unwrap();
        assert_eq!(v.fingerprint, keys.keys()[0].fingerprint());
        assert_eq!(bundle_hint(&sig, "x").unwrap(), Some(v.fingerprint));
    }

    /// The statement is deterministic: built from the FORMAT.md example manifest and its files
    /// (rebuilt here), it equals the fixture's byte for byte; the manifest is in canonical form.
    #[test]
    fn golden_statement_of_the_format_example() {
        let (bytes, m, _, _) = fixture();
        assert_eq!(m.to_json(), bytes, "the fixture manifest is canonical");
        let mut weights = vec![0u8; 1_500_000];
        let mut h = blake3::Hasher::new();
        h.update(b"mvault");
        h.finalize_xof().fill(&mut weights);
        let files = [
            ("config.json", b"{\"hidden_size\": 768}\n".to_vec()),
            ("weights/model.bin", weights),
        ]
        .map(|(path, data)| FileSha256 {
            path: path.into(),
            sha256: sha2::Sha256::digest(&data).into(),
        });
        let expected = std::fs::read(format!("{FIXTURE}/statement.json")).unwrap();
        assert_eq!(
            String::from_utf8(statement(&bytes, &m, &files)).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn golden_bundle_refuses_a_changed_manifest() {
        let (mut bytes, m, sig, keys) = fixture();
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        let err = verify(&sig, &bytes, &m, &keys, "fixture").unwrap_err();
        assert!(err.to_string().contains("manifest was altered"), "{err}");
    }

    #[test]
    fn golden_bundle_refuses_another_key_and_a_changed_payload() {
        let (bytes, m, sig, _) = fixture();
        let other = TrustedKeys::from_keys(vec![SignKey::generate().public().clone()]);
        let err = verify(&sig, &bytes, &m, &other, "fixture").unwrap_err();
        assert!(matches!(err, Error::UnknownSigner { .. }), "{err}");

        let (_, _, _, keys) = fixture();
        let mut b: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        let payload = B64
            .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8(payload)
            .unwrap()
            .replacen("sha256", "sha257", 1);
        b["dsseEnvelope"]["payload"] = B64.encode(text).into();
        let forged = serde_json::to_vec(&b).unwrap();
        let err = verify(&forged, &bytes, &m, &keys, "fixture").unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let (bytes, m, _, _) = fixture();
        let key = SignKey::generate();
        let files: Vec<FileSha256> = m
            .files
            .iter()
            .map(|f| FileSha256 {
                path: f.path.clone(),
                sha256: [7; 32],
            })
            .collect();
        let sig = sign(&key, &bytes, &m, &files);
        let keys = TrustedKeys::from_keys(vec![key.public().clone()]);
        assert!(verify(&sig, &bytes, &m, &keys, "x").is_ok());
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md: PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
        assert_eq!(
            pae(b"hello"),
            b"DSSEv1 28 application/vnd.in-toto+json 5 hello".to_vec()
        );
    }
}
