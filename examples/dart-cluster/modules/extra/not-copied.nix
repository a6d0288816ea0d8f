# In a subfolder of modules/: the Dart tool copies only the top level, and so
# does nix-infra. This file never reaches a node.
{ ... }: { }
