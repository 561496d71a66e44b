# luminous.services.monitoring: Prometheus on 127.0.0.1:9090 scraping the
# node exporter on 127.0.0.1:9100, and Grafana on 127.0.0.1:4000 with
# Prometheus as its data source. All of it through the distribution's
# modules, which need nothing rewritten: only addresses, ports, the scrape
# job, the data source and a non-default Grafana secret key.
{
  config,
  lib,
  ...
}:

let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge mkDefault types;
  cfg = config.luminous.services.monitoring;
  prom = config.services.prometheus;
  grafanaSecretKey = "${config.services.grafana.dataDir}/secret_key";
in
{
  options.luminous.services.monitoring = {
    prometheus.enable = mkEnableOption "Prometheus on 127.0.0.1:9090 with the node exporter on 127.0.0.1:9100";
    grafana.enable = mkEnableOption "Grafana on 127.0.0.1:4000, with the local Prometheus as data source";
    listenAddress = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = "Address all three listen on. Localhost: reach them through an SSH tunnel or a reverse proxy.";
    };
  };

  config = mkMerge [
    (mkIf cfg.prometheus.enable {
      services.prometheus = {
        enable = true;
        listenAddress = mkDefault cfg.listenAddress;
        port = mkDefault 9090;
        exporters.node = {
          enable = true;
          listenAddress = mkDefault cfg.listenAddress;
          port = mkDefault 9100;
          # Unit states are what a self-healing host is judged by.
          enabledCollectors = [ "systemd" ];
        };
        scrapeConfigs = [
          {
            job_name = "node";
            static_configs = [
              { targets = [ "${prom.exporters.node.listenAddress}:${toString prom.exporters.node.port}" ]; }
            ];
          }
        ];
      };
    })

    (mkIf cfg.grafana.enable {
      services.grafana = {
        enable = true;
        settings = {
          server = {
            http_addr = mkDefault cfg.listenAddress;
            http_port = mkDefault 4000;
          };
          # The distribution's default key is public knowledge (and newer
          # releases refuse to start with it): read a per-host one from a
          # file created on first start.
          security.secret_key = mkDefault "$__file{${grafanaSecretKey}}";
        };
        provision = mkIf cfg.prometheus.enable {
          enable = true;
          datasources.settings.datasources = [
            {
              name = "Prometheus";
              type = "prometheus";
              url = "http://${prom.listenAddress}:${toString prom.port}";
              isDefault = true;
            }
          ];
        };
      };

      systemd.services.grafana.preStart = lib.mkBefore ''
        if [ ! -s ${grafanaSecretKey} ]; then
          (umask 077; head -c 32 /dev/urandom | base64 -w0 > ${grafanaSecretKey})
        fi
      '';
    })
  ];
}
