// sysobsd's monitoring mixin: the alerts, recording rules and dashboards of
// deploy/prometheus and deploy/grafana in the monitoring-mixins layout.
// The YAML and JSON beside this file are copies that mixin_test.go keeps
// identical to those originals: edit the originals (and run
// `make dashboards` for the JSON), then copy (go test ./deploy/mixin
// -update). Needs go-jsonnet >= 0.18 for std.parseYaml (Debian 12's C++
// jsonnet 0.18 fails on the YAML's block scalars).
local alerts = std.parseYaml(importstr 'prometheus_alerts.yaml');
local rules = std.parseYaml(importstr 'prometheus_rules.yaml');

{
  _config+:: {
    // Put in front of every alert's runbook_url, which is relative to the
    // repository (docs/dashboards-and-alerts.md#...): for example the address
    // of the top of your copy of the repository, ending in '/'.
    runbookURLBase: '',
  },

  prometheusAlerts+:: {
    groups+: [
      group {
        rules: [
          rule { annotations+: { runbook_url: $._config.runbookURLBase + rule.annotations.runbook_url } }
          for rule in group.rules
        ],
      }
      for group in alerts.groups
    ],
  },

  prometheusRules+:: {
    groups+: rules.groups,
  },

  grafanaDashboards+:: {
    'sysobsd-overview.json': import 'dashboards_out/sysobsd-overview.json',
    'sysobsd-process.json': import 'dashboards_out/sysobsd-process.json',
  },
}
