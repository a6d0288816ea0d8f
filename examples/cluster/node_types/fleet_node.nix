# A fleet node: NixOS managed by nix-infra (configuration, secrets, upgrades),
# outside the overlay and the registry. `nix-infra fleet …` drives it.
{ config, pkgs, lib, ... }:
{
  imports = [ ./modules/base.nix ];

  networking.firewall.allowedTCPPorts = [ 22 ];
}
