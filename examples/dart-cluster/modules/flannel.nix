# The overlay: flannel over WireGuard. The network is set here, and nix-infra
# reserves every node's subnet inside it (SubnetMin to SubnetMax, /24 each).
{ config, pkgs, lib, ... }:
let
  host = config.networking.hostName;
in
lib.mkIf config.infrastructure.flannel.enable {
  services.flannel = {
    enable = true;
    storageBackend = "etcd";
    etcd.endpoints = config.infrastructure.etcdEndpoints;
    etcd.caFile = "/root/certs/ca-chain.cert.pem";
    etcd.certFile = "/root/certs/${host}-client-tls.cert.pem";
    etcd.keyFile = "/root/certs/${host}-client-tls.key.pem";
    network = "10.0.0.0/8";
    subnetMin = "10.10.0.0";
    subnetMax = "10.99.0.0";
    backend = { Type = "wireguard"; PersistentKeepaliveInterval = 60; };
  };
}
