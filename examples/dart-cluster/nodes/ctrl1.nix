# ctrl1's own settings (uploaded as /etc/nixos/ctrl1.nix). etcd reads the
# certificates under the Dart tool's names. The settings are literals here
# because the sandbox starts etcd from literal services.etcd options.
{ config, pkgs, lib, ... }:
{
  services.etcd = {
    enable = true;
    name = "[%%localhost.hostname%%]";
    dataDir = "/var/lib/etcd";
    listenClientUrls = [ "https://[%%localhost.ipv4%%]:2379" ];
    advertiseClientUrls = [ "https://[%%localhost.ipv4%%]:2379" ];
    listenPeerUrls = [ "https://[%%localhost.ipv4%%]:2380" ];
    initialAdvertisePeerUrls = [ "https://[%%localhost.ipv4%%]:2380" ];
    initialCluster = [ "[%%localhost.hostname%%]=https://[%%ctrl1.ipv4%%]:2380" ];
    initialClusterState = "new";
    clientCertAuth = true;
    peerClientCertAuth = true;
    trustedCaFile = "/root/certs/ca-chain.cert.pem";
    certFile = "/root/certs/[%%localhost.hostname%%]-client-tls.cert.pem";
    keyFile = "/root/certs/[%%localhost.hostname%%]-client-tls.key.pem";
    peerTrustedCaFile = "/root/certs/ca-chain.cert.pem";
    peerCertFile = "/root/certs/[%%localhost.hostname%%]-peer-tls.cert.pem";
    peerKeyFile = "/root/certs/[%%localhost.hostname%%]-peer-tls.key.pem";
  };
}
