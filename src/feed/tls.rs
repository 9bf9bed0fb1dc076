//! The rustls client configuration for `wss://`: ring provider, Mozilla roots, optional extra CA.

use std::sync::Arc;

use rustls::pki_types::{pem::PemObject, CertificateDer};

use super::FeedError;

/// Builds the client config once per feed thread. The provider is passed explicitly: the crate
/// enables only `ring`, and relying on a process-default provider would panic if another crate
/// ever enabled a second one.
pub(crate) fn client_config(
    extra_roots_pem: &[u8],
) -> Result<Arc<rustls::ClientConfig>, FeedError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !extra_roots_pem.is_empty() {
        for cert in CertificateDer::pem_slice_iter(extra_roots_pem) {
            let cert = cert.map_err(|e| FeedError::TlsConfig(format!("extra root pem: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| FeedError::TlsConfig(format!("extra root rejected: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| FeedError::TlsConfig(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_builds_and_bad_pem_is_refused() {
        assert!(client_config(&[]).is_ok());
        let bad = b"-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(client_config(bad), Err(FeedError::TlsConfig(_))));
    }
}
