//! `portcullis cert generate`: a development CA and a leaf certificate for the given hosts,
//! written as PEM files. For trying portcullis out and for tests; never for production.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use std::path::{Path, PathBuf};

/// The files `generate` writes.
pub struct Generated {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// An Ed25519 key for `[assertion]` (X-Auth-Jwt).
    pub assertion_key: PathBuf,
}

/// Writes `ca.pem`, `ca-key.pem`, `<name>.pem` (leaf then CA), `<name>-key.pem` and an
/// Ed25519 `assertion-key.pem` (for `[assertion]`) into `out`.
pub fn generate(out: &Path, name: &str, hosts: &[String]) -> Result<Generated, String> {
    if hosts.is_empty() {
        return Err("--hosts needs at least one name or IP address".into());
    }
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "portcullis development CA (never for production)",
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = date_time_ymd(2025, 1, 1);
    ca_params.not_after = date_time_ymd(2035, 1, 1);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;

    let mut leaf_params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| format!("invalid host in --hosts: {e}"))?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = date_time_ymd(2025, 1, 1);
    leaf_params.not_after = date_time_ymd(2035, 1, 1);
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(err)?;

    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let files = Generated {
        ca_cert: out.join("ca.pem"),
        ca_key: out.join("ca-key.pem"),
        cert: out.join(format!("{name}.pem")),
        key: out.join(format!("{name}-key.pem")),
        assertion_key: out.join("assertion-key.pem"),
    };
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&files.ca_cert, ca.pem())?;
    write(&files.ca_key, ca.key().serialize_pem())?;
    write(&files.cert, format!("{}{}", leaf.pem(), ca.pem()))?;
    write(&files.key, leaf_key.serialize_pem())?;
    let assertion = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err)?;
    write(&files.assertion_key, assertion.serialize_pem())?;
    Ok(files)
}
