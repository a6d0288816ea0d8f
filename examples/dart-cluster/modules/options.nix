{ lib, ... }:
{
  options.infrastructure = {
    etcdEndpoints = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
    flannel.enable = lib.mkEnableOption "the flannel overlay";
    confd.enable = lib.mkEnableOption "confd";
  };
}
