{ config, pkgs, lib, ... }:
lib.mkIf config.infrastructure.confd.enable {
  systemd.services.confd = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig.ExecStart = "${pkgs.confd}/bin/confd -backend etcdv3 -watch";
  };
}
