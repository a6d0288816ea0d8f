//! [`Ca`]: the cluster's certificate authority (rcgen): root, intermediate, node and orchestrator certificates.
//!
//! Layout under `ca/`: `root.pem`, `intermediate.pem` and their keys
//! `*.key.age` (encrypted with the cluster's secret key); `nodes/<node>@<ip>/`
//! with `client.pem`, `peer.pem` and encrypted keys; `orchestrator/`;
//! `revoked/<serial>` marker files and `crl.pem`, an X.509 CRL signed by the
//! intermediate. Certificates are keyed by node name **and** IP: a node
//! re-created with a new IP gets new ones, and the old ones are revoked.
//! Every write is a rename of a finished file or folder, so concurrent
//! generation needs no lock files: the loser of a race reads the winner's.

use crate::secrets::{SecretError, SecretKey, write_atomic};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a CA operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaError {
    /// The CA already exists (init never overwrites).
    #[error("a CA already exists in {0}")]
    Exists(String),
    /// No CA yet.
    #[error("no CA in {0}; run `nix-infra init`")]
    Missing(String),
    /// Certificate generation failed.
    #[error("certificate error: {0}")]
    Cert(String),
    /// Key encryption or files.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

fn cert(e: rcgen::Error) -> CaError {
    CaError::Cert(e.to_string())
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (handle with care: never log it).
    pub key_pem: age::secrecy::SecretString,
    /// Serial number, hex.
    pub serial: String,
}

/// A node's TLS material.
#[derive(Clone)]
pub struct NodeCerts {
    /// Client certificate (talking to etcd).
    pub client: Pair,
    /// Peer certificate (etcd peers, overlay).
    pub peer: Pair,
}

/// The cluster's CA, loaded.
pub struct Ca {
    dir: PathBuf,
    key: SecretKey,
    intermediate_pem: String,
    root_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn serial() -> (SerialNumber, String) {
    let bytes: [u8; 16] = rand_bytes();
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    (SerialNumber::from_slice(&bytes), hex)
}

fn rand_bytes() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // a positive serial
    b
}

impl Ca {
    /// Creates root and intermediate CAs in `dir` (refuses if one exists).
    pub fn init(dir: &Path, key: SecretKey, cluster: &str) -> Result<Ca, CaError> {
        if dir.join("root.pem").exists() {
            return Err(CaError::Exists(dir.display().to_string()));
        }
        let root_key = KeyPair::generate().map_err(cert)?;
        let mut root = CertificateParams::new(Vec::<String>::new()).map_err(cert)?;
        root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.distinguished_name
            .push(DnType::CommonName, format!("nix-infra {cluster} root CA"));
        root.serial_number = Some(serial().0);
        let root_cert = root.self_signed(&root_key).map_err(cert)?;
        let root_issuer = Issuer::new(root, root_key);

        let int_key = KeyPair::generate().map_err(cert)?;
        let mut int = CertificateParams::new(Vec::<String>::new()).map_err(cert)?;
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        int.distinguished_name.push(
            DnType::CommonName,
            format!("nix-infra {cluster} intermediate CA"),
        );
        int.serial_number = Some(serial().0);
        let int_cert = int.signed_by(&int_key, &root_issuer).map_err(cert)?;

        let root_key_pem = root_issuer.key().serialize_pem();
        write_atomic(
            &dir.join("root.key.age"),
            &key.encrypt(root_key_pem.as_bytes())?,
        )?;
        write_atomic(
            &dir.join("intermediate.key.age"),
            &key.encrypt(int_key.serialize_pem().as_bytes())?,
        )?;
        write_atomic(&dir.join("intermediate.pem"), int_cert.pem().as_bytes())?;
        // root.pem last: its presence means the CA is complete.
        write_atomic(&dir.join("root.pem"), root_cert.pem().as_bytes())?;
        Ca::load(dir, key)
    }

    /// Loads the CA in `dir`, decrypting the intermediate key with `key`.
    pub fn load(dir: &Path, key: SecretKey) -> Result<Ca, CaError> {
        let read = |n: &str| {
            std::fs::read(dir.join(n)).map_err(|_| CaError::Missing(dir.display().to_string()))
        };
        let root_pem = String::from_utf8_lossy(&read("root.pem")?).to_string();
        let intermediate_pem = String::from_utf8_lossy(&read("intermediate.pem")?).to_string();
        let key_pem = key
            .decrypt(&read("intermediate.key.age")?)
            .ok_or(SecretError::WrongKey {
                name: "ca/intermediate.key".into(),
                key: "cluster key",
            })?;
        let int_key = KeyPair::from_pem(&String::from_utf8_lossy(&key_pem)).map_err(cert)?;
        let issuer = Issuer::from_ca_cert_pem(&intermediate_pem, int_key).map_err(cert)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            key,
            intermediate_pem,
            root_pem,
            issuer,
        })
    }

    /// The Dart nix-infra's CA at `dart` (see [`crate::dart_ca`]), its
    /// intermediate's key `key_pem` opened; what it issues (node and
    /// orchestrator certificates, revocations) is kept in `dir`, encrypted
    /// with `key`, never under the Dart `ca/`.
    pub fn load_dart(
        dart: &crate::dart_ca::DartCa,
        key_pem: &age::secrecy::SecretString,
        dir: &Path,
        key: SecretKey,
    ) -> Result<Ca, CaError> {
        use age::secrecy::ExposeSecret;
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| CaError::Cert(format!("{}: {e}", p.display())))
        };
        let root_pem = read(&dart.root)?;
        let intermediate_pem = read(&dart.intermediate)?;
        let int_key = KeyPair::from_pem(key_pem.expose_secret()).map_err(cert)?;
        let issuer = Issuer::from_ca_cert_pem(&intermediate_pem, int_key).map_err(cert)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            key,
            intermediate_pem,
            root_pem,
            issuer,
        })
    }

    /// The root certificate, PEM (what clients and etcd trust).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The chain to append to leaf certificates: intermediate then root.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate_pem, self.root_pem)
    }

    fn issue(
        &self,
        cn: &str,
        sans: Vec<String>,
        usage: &[ExtendedKeyUsagePurpose],
    ) -> Result<Pair, CaError> {
        let key = KeyPair::generate().map_err(cert)?;
        let mut p = CertificateParams::new(sans).map_err(cert)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = usage.to_vec();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let (sn, hex) = serial();
        p.serial_number = Some(sn);
        let c = p.signed_by(&key, &self.issuer).map_err(cert)?;
        Ok(Pair {
            cert_pem: format!("{}{}", c.pem(), self.intermediate_pem),
            key_pem: key.serialize_pem().into(),
            serial: hex,
        })
    }

    fn save(&self, dir: &Path, name: &str, pair: &Pair) -> Result<(), CaError> {
        use age::secrecy::ExposeSecret;
        write_atomic(&dir.join(format!("{name}.pem")), pair.cert_pem.as_bytes())?;
        write_atomic(
            &dir.join(format!("{name}.key.age")),
            &self.key.encrypt(pair.key_pem.expose_secret().as_bytes())?,
        )?;
        write_atomic(&dir.join(format!("{name}.serial")), pair.serial.as_bytes())?;
        Ok(())
    }

    fn read(&self, dir: &Path, name: &str) -> Result<Pair, CaError> {
        let missing = || CaError::Missing(dir.display().to_string());
        let cert_pem =
            std::fs::read_to_string(dir.join(format!("{name}.pem"))).map_err(|_| missing())?;
        let cipher = std::fs::read(dir.join(format!("{name}.key.age"))).map_err(|_| missing())?;
        let key = self.key.decrypt(&cipher).ok_or(SecretError::WrongKey {
            name: format!("{name} key"),
            key: "cluster key",
        })?;
        let serial =
            std::fs::read_to_string(dir.join(format!("{name}.serial"))).map_err(|_| missing())?;
        Ok(Pair {
            cert_pem,
            key_pem: String::from_utf8_lossy(&key).to_string().into(),
            serial,
        })
    }

    /// The node's client and peer certificates for `ip`, issuing them on first use.
    ///
    /// Certificates the node holds for any other IP are revoked.
    pub fn node(&self, node: &str, ip: IpAddr) -> Result<NodeCerts, CaError> {
        let nodes = self.dir.join("nodes");
        let dir = nodes.join(format!("{node}@{ip}"));
        if !dir.join("peer.serial").exists() {
            let sans = vec![node.to_string(), ip.to_string(), "127.0.0.1".to_string()];
            // serverAuth too: Dart-layout repos serve etcd with the client certificate.
            let client = self.issue(
                node,
                sans.clone(),
                &[
                    ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsagePurpose::ServerAuth,
                ],
            )?;
            let peer = self.issue(
                node,
                sans,
                &[
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )?;
            ensure_dir(&nodes)?;
            let tmp = tempfile::Builder::new()
                .prefix(".issuing-")
                .tempdir_in(&nodes)
                .map_err(|e| SecretError::Io(e.to_string()))?;
            self.save(tmp.path(), "client", &client)?;
            self.save(tmp.path(), "peer", &peer)?;
            // Whoever renames first wins; the other reads the winner's files.
            let tmp = tmp.keep();
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        // A node keyed by another IP was re-created: its old certificates go.
        for other in std::fs::read_dir(&nodes)
            .map_err(|e| SecretError::Io(e.to_string()))?
            .flatten()
        {
            let n = other.file_name().to_string_lossy().to_string();
            if n.starts_with(&format!("{node}@")) && other.path() != dir {
                self.revoke_dir(&other.path())?;
            }
        }
        Ok(NodeCerts {
            client: self.read(&dir, "client")?,
            peer: self.read(&dir, "peer")?,
        })
    }

    /// The orchestrator's own client certificate (for etcd), issued on first use.
    pub fn orchestrator(&self) -> Result<Pair, CaError> {
        let dir = self.dir.join("orchestrator");
        if !dir.join("client.serial").exists() {
            let pair = self.issue(
                "nix-infra orchestrator",
                vec!["nix-infra".into()],
                &[ExtendedKeyUsagePurpose::ClientAuth],
            )?;
            self.save(&dir, "client", &pair)?;
        }
        self.read(&dir, "client")
    }

    /// Revokes every certificate of `node` (on destroy).
    pub fn revoke_node(&self, node: &str) -> Result<usize, CaError> {
        let nodes = self.dir.join("nodes");
        let mut n = 0;
        for e in std::fs::read_dir(&nodes).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{node}@"))
            {
                n += self.revoke_dir(&e.path())?;
            }
        }
        Ok(n)
    }

    fn revoke_dir(&self, dir: &Path) -> Result<usize, CaError> {
        let revoked = self.dir.join("revoked");
        ensure_dir(&revoked)?;
        let mut n = 0;
        for name in ["client", "peer"] {
            if let Ok(serial) = std::fs::read_to_string(dir.join(format!("{name}.serial"))) {
                write_atomic(
                    &revoked.join(serial.trim()),
                    dir.display().to_string().as_bytes(),
                )?;
                n += 1;
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        self.write_crl()?;
        Ok(n)
    }

    /// Serials (hex) of every revoked certificate.
    pub fn revoked(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("revoked"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    /// Writes `crl.pem`, an X.509 CRL of every revoked serial, signed by the intermediate.
    fn write_crl(&self) -> Result<(), CaError> {
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = self
            .revoked()
            .iter()
            .map(|hex| {
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect();
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                }
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(cert)?;
        write_atomic(
            &self.dir.join("crl.pem"),
            crl.pem().map_err(cert)?.as_bytes(),
        )?;
        Ok(())
    }
}

fn ensure_dir(dir: &Path) -> Result<(), CaError> {
    std::fs::create_dir_all(dir).map_err(|e| SecretError::Io(format!("{}: {e}", dir.display())))?;
    Ok(())
}
