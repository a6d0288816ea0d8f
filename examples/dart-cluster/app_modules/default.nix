# Every app's module; a node turns on the ones it runs (apps.<name>.enable).
{ ... }:
{
  imports = [ ./hello ];
}
