//! TLS on the signalling port: the acceptor built from the configured PEM files, and the
//! self-signed certificate `--dev --lan` makes so a phone on the same network gets a secure
//! page (browsers give the microphone to secure pages only).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

/// Browsers refuse server certificates valid for more than 398 days.
const DEV_CERT_DAYS: u32 = 365;
/// A kept certificate this close to its end is made again rather than reused.
const RENEW_DAYS_BEFORE_END: u32 = 7;

/// The acceptor for `server.tls_cert` (a PEM chain) and `server.tls_key`; errors name the
/// file and what is wrong with it.
pub fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptorBuilder, String> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    builder.set_certificate_chain_file(cert).map_err(|e| {
        format!(
            "server.tls_cert {}: not a PEM certificate chain ({e})",
            cert.display()
        )
    })?;
    let pem = std::fs::read(key).map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let private = PKey::private_key_from_pem(&pem).map_err(|e| {
        format!(
            "server.tls_key {}: not a PEM private key ({e})",
            key.display()
        )
    })?;
    let mismatch = |e: openssl::error::ErrorStack| {
        format!(
            "server.tls_key {} is not the key of the certificate in {} ({e})",
            key.display(),
            cert.display()
        )
    };
    builder.set_private_key(&private).map_err(mismatch)?;
    builder.check_private_key().map_err(mismatch)?;
    Ok(builder)
}

/// The development certificate and key in `dir`, valid for `localhost`, 127.0.0.1 and every
/// address in `ips`. A kept one is reused while it still names them all and is not near its
/// end, so a phone that accepted it once is not asked again at every start.
pub fn dev_certificate(dir: &Path, ips: &[IpAddr]) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("lan-cert.pem");
    let key_path = dir.join("lan-key.pem");
    if let Ok(pem) = std::fs::read(&cert_path) {
        if key_path.exists() && reusable(&pem, ips) {
            return Ok((cert_path, key_path));
        }
    }
    let (cert, key) = self_signed(ips).map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, cert)
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn reusable(pem: &[u8], ips: &[IpAddr]) -> bool {
    let Ok(cert) = X509::from_pem(pem) else {
        return false;
    };
    let Ok(soon) = Asn1Time::days_from_now(RENEW_DAYS_BEFORE_END) else {
        return false;
    };
    if cert.not_after() < soon {
        return false;
    }
    let named: Vec<Vec<u8>> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.ipaddress().map(<[u8]>::to_vec))
                .collect()
        })
        .unwrap_or_default();
    ips.iter().all(|ip| {
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        named.contains(&octets)
    })
}

/// A P-256 key and a self-signed server certificate for it, as PEM.
fn self_signed(ips: &[IpAddr]) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "Amphi development server")?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let (start, end) = (
        Asn1Time::days_from_now(0)?,
        Asn1Time::days_from_now(DEV_CERT_DAYS)?,
    );
    builder.set_not_before(&start)?;
    builder.set_not_after(&end)?;
    let mut san = SubjectAlternativeName::new();
    san.dns("localhost").ip("127.0.0.1");
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&builder.x509v3_context(None, None))?;
    builder.append_extension(san)?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build().to_pem()?, key.private_key_to_pem_pkcs8()?))
}

/// The key file is readable by its owner only.
fn write_private(path: &Path, pem: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(pem)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_certificate_names_its_addresses_is_kept_and_serves() {
        let dir = std::env::temp_dir().join(format!("amphi-tls-{}", std::process::id()));
        let lan: IpAddr = "10.1.2.3".parse().unwrap();
        let (cert, key) = dev_certificate(&dir, &[lan]).unwrap();
        let first = std::fs::read(&cert).unwrap();
        assert!(reusable(&first, &[lan]));
        assert!(!reusable(&first, &["10.9.9.9".parse().unwrap()]));
        // The same addresses again: the same certificate, so a browser's exception holds.
        let (again, _) = dev_certificate(&dir, &[lan]).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), first);
        // A new address: a new certificate that names it.
        let other: IpAddr = "10.9.9.9".parse().unwrap();
        dev_certificate(&dir, &[other]).unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first);
        assert!(acceptor(&cert, &key).is_ok());
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("amphi-tls-mismatch-{}", std::process::id()));
        let a = dir.join("a");
        let b = dir.join("b");
        let (cert, _) = dev_certificate(&a, &[]).unwrap();
        let (_, other_key) = dev_certificate(&b, &[]).unwrap();
        let err = acceptor(&cert, &other_key).err().unwrap();
        assert!(err.contains("is not the key of the certificate"), "{err}");
        let err = acceptor(&dir.join("missing.pem"), &other_key)
            .err()
            .unwrap();
        assert!(err.starts_with("server.tls_cert"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
