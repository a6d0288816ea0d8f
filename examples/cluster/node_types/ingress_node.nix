# An ingress node: HAProxy on 80/443 in front of the frontends registered in
# etcd, reached over the overlay.
{ config, pkgs, lib, ... }:
let
  etcdEndpoints = "[%%etcdEndpoints%%]";
in
{
  imports = [ ./modules/base.nix ./modules/mesh.nix ];

  services.flannel = {
    enable = true;
    network = "[%%overlayNetwork%%]";
    publicIp = "[%%localIp%%]";
    backend = { Type = "wireguard"; };
    etcd = {
      endpoints = lib.splitString "," etcdEndpoints;
      caFile = "[%%certsDir%%]/ca.pem";
      certFile = "[%%certsDir%%]/client.pem";
      keyFile = "[%%certsDir%%]/client-key.pem";
    };
  };

  nix-infra.mesh = {
    etcdEndpoints = etcdEndpoints;
    overlayIp = "[%%overlayIp%%]";
    serviceGroups = lib.splitString "," "[%%serviceGroups%%]";
  };

  networking.firewall.allowedTCPPorts = [ 80 443 ];
}
