# A control node (uploaded as /etc/nixos/control_node.nix): it runs etcd.
# [%%etcdCluster%%] lists the control nodes as { name; ip; } sets, and
# [%%etcdClusterToken%%] names this etcd cluster.
{ config, pkgs, lib, ... }:
let
  members = [ [%%etcdCluster%%] ];
in
{
  services.etcd.initialClusterToken = "[%%etcdClusterToken%%]";
  environment.etc."nix-infra/etcd-members.json".text = builtins.toJSON members;
  networking.firewall.allowedTCPPorts = [ 2379 2380 ];
}
