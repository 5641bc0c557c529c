//! The private CA and server certificate made on first start. The CA is what clients pin, so it
//! is made once and kept; the server certificate is reissued from it only when the names it
//! must carry change. Keys are written 0600 before any byte of them is.

use super::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The files of a generated TLS identity.
pub(super) struct Files {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Localhost, the loopback addresses and the host name, then `extra` (deduplicated, in order).
pub(super) fn server_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host = crate::hostname();
    // A host name that is not a valid DNS name would make the whole certificate unusable.
    if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        names.push(host);
    }
    for name in extra {
        let name = name.trim().to_owned();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes the CA (if absent) and the server certificate (if absent or for other names).
pub(super) fn ensure(dir: &Path, names: &[String]) -> Result<Files, TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let server_cert = dir.join("server.pem");
    let server_key = dir.join("server.key");
    let names_file = dir.join("server.names");

    if !ca_cert.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(generate_error)?;
        let certificate = ca_params().self_signed(&key).map_err(generate_error)?;
        // The key first: a CA file without its key would be reused and could sign nothing.
        write_file(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_cert, certificate.pem().as_bytes(), 0o644)?;
        // A new CA invalidates any server certificate signed by an old one.
        let _ = std::fs::remove_file(&names_file);
    }

    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if current != wanted || !server_cert.exists() || !server_key.exists() {
        let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Pem {
            path: ca_key.clone(),
            reason: e.to_string(),
        })?;
        // The issuer is the CA's name and key; the parameters are rebuilt exactly as made.
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate().map_err(generate_error)?;
        let certificate = server_params(names)?
            .signed_by(&key, &issuer)
            .map_err(generate_error)?;
        write_file(&server_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&server_cert, certificate.pem().as_bytes(), 0o644)?;
        write_file(&names_file, wanted.as_bytes(), 0o644)?;
    }
    Ok(Files {
        ca_cert,
        ca_key,
        server_cert,
        server_key,
    })
}

/// Ten years from the start of last year: a private CA's certificates should not expire under a
/// running fleet, and clock skew on a fresh host should not make them "not yet valid".
fn validity(params: &mut CertificateParams) {
    let seconds = ringfence_protocol::clock::unix_secs();
    let year = 1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "ringfence");
    name.push(DnType::CommonName, "ringfence server CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    params
}

fn server_params(names: &[String]) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "ringfence");
    name.push(DnType::CommonName, "ringfence server");
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    Ok(params)
}

/// Writes `bytes` to `path` through a temporary file created with `mode`, so a key is never
/// readable by others, not even half-written.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    // A leftover from a crash keeps its old mode when reopened; start from nothing.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
}
