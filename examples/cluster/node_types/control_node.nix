# A control node: runs etcd, the cluster's registry, over mutual TLS.
# nix-infra fills the placeholders (see README.md) when it uploads this file as
# /etc/nixos/node_type.nix; the certificates in [%%certsDir%%] come from the
# cluster CA (`nix-infra init`).
{ config, pkgs, lib, ... }:
{
  imports = [ ./modules/base.nix ];

  services.etcd = {
    enable = true;
    name = "[%%nodeName%%]";
    dataDir = "/var/lib/etcd";
    listenClientUrls = [ "https://[%%localIp%%]:2379" ];
    advertiseClientUrls = [ "https://[%%localIp%%]:2379" ];
    listenPeerUrls = [ "https://[%%localIp%%]:2380" ];
    initialAdvertisePeerUrls = [ "https://[%%localIp%%]:2380" ];
    initialCluster = [ "[%%etcdInitialCluster%%]" ];
    initialClusterState = "new";
    clientCertAuth = true;
    peerClientCertAuth = true;
    trustedCaFile = "[%%certsDir%%]/ca.pem";
    certFile = "[%%certsDir%%]/peer.pem";
    keyFile = "[%%certsDir%%]/peer-key.pem";
    peerTrustedCaFile = "[%%certsDir%%]/ca.pem";
    peerCertFile = "[%%certsDir%%]/peer.pem";
    peerKeyFile = "[%%certsDir%%]/peer-key.pem";
  };

  networking.firewall.allowedTCPPorts = [ 2379 2380 ];
}
