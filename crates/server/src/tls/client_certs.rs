//! Client certificates for agents (mutual TLS). A bearer credential is a string: copied off a
//! host it works from anywhere. A certificate whose key was made on the host and never left it
//! ties the credential to that host's key. At enrollment the agent sends a certificate signing
//! request; the server signs it with its private CA, naming the agent id. Every connection that
//! presents such a certificate is verified by rustls against the same CA, and the agent id it
//! names is handed to the HTTP layer, which checks it against the credential's agent.
//!
//! Only the generated-CA mode can do this: with the operator's own certificate the server holds
//! no CA key to sign with, and plain HTTP has no handshake to carry a certificate.

use super::TlsError;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Backdating, so a host whose clock is a little behind the server's can use it at once.
const SKEW: Duration = Duration::from_secs(86_400);
/// A CSR for an EC or Ed25519 key is well under 1 KiB; even RSA-4096 stays under 4 KiB.
const MAX_CSR_BYTES: usize = 16 << 10;
/// The subject alternative name (URI) that names an agent: `urn:ringfence:agent:<id>`.
const AGENT_URI_PREFIX: &str = "urn:ringfence:agent:";

/// Why a certificate signing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate signing request is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("not a valid PEM certificate signing request ({0})")]
    Invalid(String),
}

/// A signing request whose self-signature checked out: the requester holds the private key of
/// the public key inside. Only that key is used; whatever names or usages it asks for are not.
#[derive(Debug)]
pub struct VerifiedCsr(CertificateSigningRequestParams);

impl VerifiedCsr {
    pub fn from_pem(pem: &str) -> Result<VerifiedCsr, CsrError> {
        if pem.len() > MAX_CSR_BYTES {
            return Err(CsrError::TooLarge);
        }
        CertificateSigningRequestParams::from_pem(pem)
            .map(VerifiedCsr)
            .map_err(|e| CsrError::Invalid(e.to_string()))
    }
}

/// Signs agents' client certificates with the server's private CA.
#[derive(Debug)]
pub struct AgentIssuer {
    issuer: Issuer<'static, KeyPair>,
}

impl AgentIssuer {
    /// The issuer named exactly as the CA certificate names itself, so the chains verify.
    pub(super) fn new(ca: &CertificateDer<'_>, key: KeyPair) -> Result<AgentIssuer, TlsError> {
        Issuer::from_ca_cert_der(ca, key)
            .map(|issuer| AgentIssuer { issuer })
            .map_err(|e| TlsError::Generate(format!("cannot sign with the CA: {e}")))
    }

    /// A PEM client certificate for `agent_id` over the CSR's key, valid for `validity` (and
    /// a day before now, for clocks a little behind).
    pub fn issue(
        &self,
        agent_id: &str,
        csr: &VerifiedCsr,
        validity: Duration,
    ) -> Result<String, TlsError> {
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "ringfence agents");
        name.push(DnType::CommonName, agent_id);
        params.distinguished_name = name;
        let uri = format!("{AGENT_URI_PREFIX}{agent_id}")
            .try_into()
            .map_err(generate)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = datetime(now.checked_sub(SKEW).unwrap_or(now))?;
        params.not_after = datetime(now + validity)?;
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.0.public_key.clone(),
        };
        request
            .signed_by(&self.issuer)
            .map(|certificate| certificate.pem())
            .map_err(generate)
    }
}

fn datetime(at: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_err(|e| TlsError::Generate(format!("the clock is before 1970: {e}")))?
        .as_secs();
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .ok_or_else(|| TlsError::Generate("the clock is out of range".into()))
}

/// What the client of one connection proved with a certificate. rustls has already verified
/// the chain against our CA (and the clientAuth usage) before anything here looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// No certificate: operators, the dashboard, enrolling agents and agents without one.
    Absent,
    /// A certificate naming this agent.
    Agent(String),
    /// A certificate from our CA that names no agent; it proves nothing about any agent.
    Unnamed,
}

impl ClientCert {
    /// Reads the agent id from the leaf of a verified client chain.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> ClientCert {
        let Some(leaf) = chain.and_then(<[_]>::first) else {
            return ClientCert::Absent;
        };
        agent_id(leaf).map_or(ClientCert::Unnamed, ClientCert::Agent)
    }
}

fn agent_id(leaf: &CertificateDer<'_>) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let mut agents = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(AGENT_URI_PREFIX),
            _ => None,
        });
    let id = agents.next()?;
    // A certificate naming two agents speaks for neither.
    if agents.next().is_some() || id.is_empty() {
        return None;
    }
    Some(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use rustls::pki_types::pem::PemObject;

    fn issuer() -> (AgentIssuer, CertificateDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let ca = params.self_signed(&key).expect("CA");
        let der = ca.der().clone();
        (AgentIssuer::new(&der, key).expect("issuer"), der)
    }

    fn csr() -> String {
        let key = KeyPair::generate().expect("key");
        CertificateParams::default()
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    #[test]
    fn an_issued_certificate_names_the_agent_and_nothing_the_csr_asked_for() {
        let (issuer, _) = issuer();
        let key = KeyPair::generate().expect("key");
        let mut asked = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        asked.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = asked
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let csr = VerifiedCsr::from_pem(&pem).expect("valid");
        let year = Duration::from_secs(365 * 86_400);
        let certificate = issuer.issue("agent-1234", &csr, year).expect("issue");
        let der = CertificateDer::from_pem_slice(certificate.as_bytes()).expect("pem");
        assert_eq!(
            ClientCert::from_chain(Some(std::slice::from_ref(&der))),
            ClientCert::Agent("agent-1234".into())
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert!(!parsed.is_ca(), "the CSR asked to be a CA");
        let names = format!("{:?}", parsed.subject_alternative_name());
        assert!(!names.contains("evil.example"), "{names}");
        assert_eq!(parsed.public_key().raw, key.subject_public_key_info());
        let lifetime =
            parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
        assert_eq!(
            lifetime,
            i64::try_from((year + SKEW).as_secs()).expect("fits")
        );
    }

    #[test]
    fn garbage_oversized_and_forged_requests_are_refused() {
        for bad in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            assert!(
                matches!(VerifiedCsr::from_pem(bad), Err(CsrError::Invalid(_))),
                "{bad:?}"
            );
        }
        let huge = "A".repeat(MAX_CSR_BYTES + 1);
        assert!(matches!(
            VerifiedCsr::from_pem(&huge),
            Err(CsrError::TooLarge)
        ));
        // The signature is the end of the DER, so the last line of base64 is its last bytes:
        // a changed character there leaves a well-formed request that no longer verifies.
        let good = csr();
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        let last = lines.len() - 2;
        let mut chars: Vec<char> = lines[last].chars().collect();
        let at = chars.len().saturating_sub(6);
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        lines[last] = chars.into_iter().collect();
        let forged = lines.join("\n");
        let error = VerifiedCsr::from_pem(&forged).expect_err("forged");
        assert!(error.to_string().contains("signature"), "{error}");
        VerifiedCsr::from_pem(&good).expect("the original verifies");
    }

    #[test]
    fn certificates_naming_no_agent_or_two_are_unnamed() {
        assert_eq!(ClientCert::from_chain(None), ClientCert::Absent);
        assert_eq!(ClientCert::from_chain(Some(&[])), ClientCert::Absent);
        let (_, ca) = issuer();
        assert_eq!(ClientCert::from_chain(Some(&[ca])), ClientCert::Unnamed);
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = ["a", "b"]
            .iter()
            .map(|id| SanType::URI(format!("{AGENT_URI_PREFIX}{id}").try_into().expect("uri")))
            .collect();
        let two = params.self_signed(&key).expect("cert");
        assert_eq!(
            ClientCert::from_chain(Some(&[two.der().clone()])),
            ClientCert::Unnamed
        );
    }
}
