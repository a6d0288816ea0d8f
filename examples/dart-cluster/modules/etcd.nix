# etcd, as a NixOS module: off unless the control node type turns it on with
# the members and the cluster's token. It listens on the node's public
# address, the one nixos-infect's networking.nix gives eth0, and reads the
# certificates under the Dart tool's names.
{ config, lib, ... }:
let
  cfg = config.infrastructure.etcd;
  name = config.networking.hostName;
  address = (builtins.head config.networking.interfaces.eth0.ipv4.addresses).address;
  tls = kind: part: "/root/certs/${name}-${kind}-tls.${part}.pem";
in
{
  options.infrastructure.etcd = {
    enable = lib.mkEnableOption "etcd on this control node";
    members = lib.mkOption {
      type = lib.types.listOf lib.types.attrs;
      default = [ ];
      description = "The control nodes, as { name; ip; } sets.";
    };
    token = lib.mkOption {
      type = lib.types.str;
      description = "The etcd cluster's initial token.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = [ 2379 2380 ];
    services.etcd = {
      enable = true;
      inherit name;
      initialClusterToken = cfg.token;
      initialCluster = map (m: "${m.name}=https://${m.ip}:2380") cfg.members;
      initialClusterState = lib.mkDefault "new";
      listenClientUrls = [ "https://${address}:2379" ];
      advertiseClientUrls = [ "https://${address}:2379" ];
      listenPeerUrls = [ "https://${address}:2380" ];
      initialAdvertisePeerUrls = [ "https://${address}:2380" ];
      clientCertAuth = true;
      peerClientCertAuth = true;
      trustedCaFile = "/root/certs/ca-chain.cert.pem";
      certFile = tls "client" "cert";
      keyFile = tls "client" "key";
      peerCertFile = tls "peer" "cert";
      peerKeyFile = tls "peer" "key";
    };
  };
}
