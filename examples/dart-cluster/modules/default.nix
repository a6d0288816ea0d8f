# The modules every node imports. nix-infra copies the files of modules/ as
# the Dart tool does: the top level only (modules/extra/ stays local).
{ ... }:
{
  imports = [ ./options.nix ./etcd.nix ./flannel.nix ./confd.nix ];
}
