# A control node (uploaded as /etc/nixos/control_node.nix): it runs etcd
# (modules/etcd.nix). [%%etcdCluster%%] lists the control nodes as
# { name; ip; } sets, and [%%etcdClusterToken%%] names this etcd cluster.
{ config, pkgs, lib, ... }:
let
  members = [ [%%etcdCluster%%] ];
in
{
  infrastructure.etcd = {
    enable = true;
    inherit members;
    token = "[%%etcdClusterToken%%]";
  };
  environment.etc."nix-infra/etcd-members.json".text = builtins.toJSON members;
}
