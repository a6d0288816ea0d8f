# The hello app: a greeting from a secret, on the node's overlay address.
{ config, pkgs, lib, ... }:
let
  cfg = config.apps.hello;
in
{
  options.apps.hello = {
    enable = lib.mkEnableOption "the hello app";
    greetingFile = lib.mkOption { type = lib.types.str; };
    bindToIp = lib.mkOption { type = lib.types.str; default = "127.0.0.1"; };
    peer = lib.mkOption { type = lib.types.str; default = ""; };
  };
  config = lib.mkIf cfg.enable {
    systemd.services.hello = {
      wantedBy = [ "multi-user.target" ];
      serviceConfig.LoadCredentialEncrypted = "greeting:${cfg.greetingFile}";
      script = "${pkgs.python3}/bin/python3 -m http.server 8080 --bind ${cfg.bindToIp}";
    };
  };
}
