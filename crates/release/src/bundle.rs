//! The release bundle: one ustar file holding the manifest, its detached signatures, the
//! engine component and the content. Reading it is hardened, because the bytes come from the
//! network: size limits before reading, a fixed set of member names (which is also the
//! path-traversal guard), regular files only, no duplicates, nothing after the end, and every
//! member checked against the manifest's hash and size.
//!
//! `Bundle` says nothing about who signed it: that is [`crate::verify`]'s job.

use crate::keys::ReleaseKey;
use crate::manifest::{Component, Manifest, ManifestError};
use crate::sign::{self, Purpose, Signature, SignatureError, Signatures};
use crate::{
    MAX_BUNDLE_BYTES, MAX_CONTENT_BYTES, MAX_ENGINE_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURES_BYTES,
};
use std::io::{Cursor, Read};

/// The members a bundle may hold, with their file names (in the bundle and in a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    Manifest,
    Signatures,
    Engine,
    Content,
}

impl Member {
    pub const ALL: [Member; 4] = [
        Member::Manifest,
        Member::Signatures,
        Member::Engine,
        Member::Content,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Member::Manifest => "manifest.json",
            Member::Signatures => "signatures.json",
            Member::Engine => "engine.wasm",
            Member::Content => "content",
        }
    }

    pub fn limit(self) -> u64 {
        match self {
            Member::Manifest => MAX_MANIFEST_BYTES,
            Member::Signatures => MAX_SIGNATURES_BYTES,
            Member::Engine => MAX_ENGINE_BYTES,
            Member::Content => MAX_CONTENT_BYTES,
        }
    }

    fn from_name(name: &[u8]) -> Option<Member> {
        Member::ALL
            .into_iter()
            .find(|m| m.file_name().as_bytes() == name)
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Why bundle bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{what} is {size} bytes, more than the {limit} allowed")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("not a valid bundle: {0}")]
    Malformed(String),
    #[error("bundle has no {0} member")]
    Missing(Member),
    #[error("bundle has {0} twice")]
    Duplicate(Member),
    #[error("bundle has an unexpected member {0:?}")]
    UnexpectedMember(String),
    #[error("{0} does not match the hash or size in the manifest")]
    HashMismatch(Member),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("signatures: {0}")]
    Signatures(#[from] SignatureError),
}

/// A structurally sound bundle whose members match its manifest. Not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    signatures: Vec<Signature>,
    engine: Option<Vec<u8>>,
    content: Option<Vec<u8>>,
}

impl Bundle {
    /// Builds and signs a bundle. The manifest's `engine`/`content` entries must describe
    /// exactly the bytes given (use [`Component::of`]).
    pub fn build(
        manifest: &Manifest,
        engine: Option<Vec<u8>>,
        content: Option<Vec<u8>>,
        key: &ReleaseKey,
    ) -> Result<Bundle, BundleError> {
        let manifest_bytes = manifest.to_bytes()?;
        let signature = sign::sign(key, Purpose::Manifest, &manifest_bytes);
        Bundle::from_parts(manifest_bytes, vec![signature], engine, content)
    }

    /// Assembles a bundle from its members, checking everything `read` checks. The slot store
    /// uses it for releases read back from disk.
    pub fn from_parts(
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        engine: Option<Vec<u8>>,
        content: Option<Vec<u8>>,
    ) -> Result<Bundle, BundleError> {
        let manifest = Manifest::parse(&manifest_bytes)?;
        // Round-trip the list through the strict parser's shape checks.
        let signatures = Signatures::parse(&Signatures { signatures }.to_bytes())?.signatures;
        check_member(Member::Engine, manifest.engine.as_ref(), engine.as_deref())?;
        check_member(
            Member::Content,
            manifest.content.as_ref(),
            content.as_deref(),
        )?;
        Ok(Bundle {
            manifest_bytes,
            manifest,
            signatures,
            engine,
            content,
        })
    }

    /// Parses bundle bytes from an untrusted source.
    pub fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                what: "bundle".into(),
                size: bytes.len() as u64,
                limit: MAX_BUNDLE_BYTES,
            });
        }
        let members = read_members(bytes)?;
        let [manifest, signatures, engine, content] = members;
        let manifest = manifest.ok_or(BundleError::Missing(Member::Manifest))?;
        let signatures = signatures.ok_or(BundleError::Missing(Member::Signatures))?;
        let signatures = Signatures::parse(&signatures)?.signatures;
        Bundle::from_parts(manifest, signatures, engine, content)
    }

    /// The bundle as a deterministic ustar file (fixed order, mode 0644, owner 0, mtime 0).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let mut builder = tar::Builder::new(Vec::new());
        let signatures = self.signatures_bytes();
        let mut members: Vec<(Member, &[u8])> = vec![
            (Member::Manifest, &self.manifest_bytes),
            (Member::Signatures, &signatures),
        ];
        if let Some(engine) = &self.engine {
            members.push((Member::Engine, engine));
        }
        if let Some(content) = &self.content {
            members.push((Member::Content, content));
        }
        let io = |e: std::io::Error| BundleError::Malformed(format!("writing tar: {e}"));
        for (member, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_path(member.file_name()).map_err(io)?;
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append(&header, data).map_err(io)?;
        }
        builder.into_inner().map_err(io)
    }

    /// Adds a signature by another key (co-signing); replaces an older one by the same key.
    pub fn add_signature(&mut self, key: &ReleaseKey) -> Result<(), BundleError> {
        let signature = sign::sign(key, Purpose::Manifest, &self.manifest_bytes);
        self.signatures.retain(|s| s.keyid != signature.keyid);
        self.signatures.push(signature);
        Signatures::parse(&self.signatures_bytes())?;
        Ok(())
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest exactly as signed.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The `signatures.json` member.
    pub fn signatures_bytes(&self) -> Vec<u8> {
        Signatures {
            signatures: self.signatures.clone(),
        }
        .to_bytes()
    }

    pub fn engine(&self) -> Option<&[u8]> {
        self.engine.as_deref()
    }

    pub fn content(&self) -> Option<&[u8]> {
        self.content.as_deref()
    }

    /// Hex SHA-256 of the manifest bytes: a short, unique name for this exact release.
    pub fn manifest_digest(&self) -> crate::Sha256Digest {
        crate::Sha256Digest::of(&self.manifest_bytes)
    }
}

fn check_member(
    member: Member,
    expected: Option<&Component>,
    actual: Option<&[u8]>,
) -> Result<(), BundleError> {
    match (expected, actual) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(BundleError::Missing(member)),
        (None, Some(_)) => Err(BundleError::UnexpectedMember(format!(
            "{member} (the manifest does not list one)"
        ))),
        (Some(component), Some(bytes)) if component.matches(bytes) => Ok(()),
        (Some(_), Some(_)) => Err(BundleError::HashMismatch(member)),
    }
}

/// Reads the tar members into slots indexed like [`Member::ALL`].
fn read_members(bytes: &[u8]) -> Result<[Option<Vec<u8>>; 4], BundleError> {
    let malformed = |e: std::io::Error| BundleError::Malformed(e.to_string());
    let mut members: [Option<Vec<u8>>; 4] = Default::default();
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let name = entry.path_bytes().into_owned();
        let shown = || {
            String::from_utf8_lossy(&name)
                .chars()
                .take(100)
                .collect::<String>()
        };
        let member =
            Member::from_name(&name).ok_or_else(|| BundleError::UnexpectedMember(shown()))?;
        // Links, directories, devices and the like have no place in a bundle; pax and GNU
        // long-name records are consumed by the tar reader before we see an entry.
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::Malformed(format!(
                "{member} is not a regular file"
            )));
        }
        let size = entry.size();
        if size > member.limit() {
            return Err(BundleError::TooLarge {
                what: member.to_string(),
                size,
                limit: member.limit(),
            });
        }
        let slot = &mut members[member as usize];
        if slot.is_some() {
            return Err(BundleError::Duplicate(member));
        }
        // The size is bounded above and by the input length, so this allocation is too.
        let mut data =
            Vec::with_capacity(usize::try_from(size.min(bytes.len() as u64)).unwrap_or(0));
        (&mut entry)
            .take(member.limit() + 1)
            .read_to_end(&mut data)
            .map_err(malformed)?;
        if data.len() as u64 != size {
            return Err(BundleError::Malformed(format!(
                "{member} is truncated ({} of {size} bytes)",
                data.len()
            )));
        }
        *slot = Some(data);
    }
    // Everything after the end-of-archive block must be padding, so that a bundle has one
    // meaning and nothing can hide behind it.
    let end = usize::try_from(archive.into_inner().position()).unwrap_or(usize::MAX);
    let rest = bytes.get(end..).unwrap_or_default();
    if rest.iter().any(|&b| b != 0) {
        return Err(BundleError::Malformed(
            "data after the end of the archive".into(),
        ));
    }
    Ok(members)
}

#[cfg(test)]
mod tests;
