package main

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// What every sysobsd dashboard shares: the templated data source, job and
// instance (dashboard-linter's conventions), the selector built from them, and
// the panel shapes.

const (
	tag = "sysobsd"
	// refresh and timeFrom are the dashboards' defaults.
	refresh  = "30s"
	timeFrom = "now-1h"
)

// datasourceRef is the templated data source; no panel names a fixed uid.
func datasourceRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// sel is the label selector of every query: the dashboard's job and
// instance, then extra matchers.
func sel(extra ...string) string {
	return "{" + strings.Join(append([]string{`job=~"$job"`, `instance=~"$instance"`}, extra...), ", ") + "}"
}

// rate is rate(metric{sel(extra)}[$__rate_interval]).
func rate(metric string, extra ...string) string {
	return "rate(" + metric + sel(extra...) + "[$__rate_interval])"
}

// newDashboard starts a dashboard with the variables every sysobsd dashboard
// has: datasource, job and instance.
func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{tag}).
		Refresh(refresh).
		Time(timeFrom, "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("sysobsd dashboards").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{tag}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus")).
		WithVariable(labelVariable("job", "Job", `sysobsd_build_info`, true)).
		WithVariable(labelVariable("instance", "Instance", `sysobsd_build_info{job=~"$job"}`, true))
}

// labelVariable is a query variable over a label's values, refreshed when
// the time range changes; multi-valued ones have "All" as ".+".
func labelVariable(name, label, selector string, multi bool) *dashboard.QueryVariableBuilder {
	query := "label_values(" + selector + ", " + name + ")"
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasourceRef()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if multi {
		v.Multi(true).IncludeAll(true).AllValue(".+")
	}
	return v
}

// query is a range query for a time series panel.
func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasourceRef()).
		Expr(expr).
		LegendFormat(legend).
		Range()
}

// instant is an instant query in table format, for a table panel.
func instant(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasourceRef()).
		Expr(expr).
		Format(prometheus.PromQueryFormatTable).
		Instant()
}

// refIDs names queries A, B, C... in order: a table's merged columns are
// "Value #A", "Value #B"...
func refIDs(queries []*prometheus.DataqueryBuilder) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], len(queries))
	for i, q := range queries {
		out[i] = q.RefId(string(rune('A' + i)))
	}
	return out
}

// timeseriesPanel is a line chart with a table legend, sorted by value in
// the tooltip.
func timeseriesPanel(title, description, unit string, queries ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasourceRef()).
		Targets(refIDs(queries)).
		Unit(unit).
		Min(0).
		Height(8).
		Span(12).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).
			Calcs([]string{"mean", "max"}).
			SortBy("Mean").
			SortDesc(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// statPanel is a single number with its sparkline.
func statPanel(title, description, unit string, q *prometheus.DataqueryBuilder) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasourceRef()).
		Targets(refIDs([]*prometheus.DataqueryBuilder{q})).
		Unit(unit).
		Height(4).
		Span(4).
		GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeValue).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
}

// column is one column of a table built from instant queries: its query, its
// header and its unit.
type column struct {
	header, unit, expr string
}

// tablePanel joins instant queries on their common labels (merge), names
// their value columns by header, hides the timestamp and sorts by sortBy.
// Its max data points is 1, so that $__interval, and with it
// $__rate_interval, spans the dashboard's whole time range: the rates are
// averages over the range, as strace -c's columns are totals over the run.
func tablePanel(title, description string, labels []string, sortBy string, columns ...column) *table.PanelBuilder {
	queries := make([]*prometheus.DataqueryBuilder, len(columns))
	rename := map[string]any{}
	index := map[string]any{}
	for i, c := range columns {
		queries[i] = instant(c.expr)
		value := "Value #" + string(rune('A'+i))
		if len(columns) == 1 {
			value = "Value"
		}
		rename[value] = c.header
		index[value] = i
	}
	for i, l := range labels {
		index[l] = len(columns) + i
	}
	p := table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasourceRef()).
		Targets(refIDs(queries)).
		MaxDataPoints(1).
		Unit("short").
		Height(12).
		Span(24).
		CellHeight(common.TableCellHeightSm).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"})).
		Filterable(true).
		SortBy([]cog.Builder[common.TableSortByFieldState]{
			common.NewTableSortByFieldStateBuilder().DisplayName(sortBy).Desc(true),
		}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
			"indexByName":   index,
			"renameByName":  rename,
		}})
	for _, c := range columns {
		p.OverrideByName(c.header, []dashboard.DynamicConfigValue{{Id: "unit", Value: c.unit}})
	}
	return p
}

// row is a dashboard row; the panels added after it belong to it.
func row(title string) *dashboard.RowBuilder {
	return dashboard.NewRowBuilder(title)
}
