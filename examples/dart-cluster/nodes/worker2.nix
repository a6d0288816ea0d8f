# worker2 builds from a private binary cache: its netrc is a pre-build
# secret, in /run/keys before the rebuild that needs it.
{ config, pkgs, lib, ... }:
{
  nix.settings.netrc-file = "/run/keys/[%%pre-build-secrets/private-cache-netrc%%]";
  nix.settings.substituters = [ "https://cache.example.org" ];
  apps.hello.enable = false;
}
