package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// documented is what default.yml and the README promise.
var documented = Config{
	Latency:            LatencySampled,
	LatencySampleEvery: 16,
	FoldInterval:       time.Second,
	Maps: Maps{
		CallSlotsPerCPU:    8192,
		StatsEntries:       65536,
		ErrorsEntries:      16384,
		GroupStatsEntries:  8192,
		GroupErrorsEntries: 4096,
		RingBufferBytes:    1 << 20,
	},
	Labels:          []string{"comm"},
	HistogramLabels: []string{"syscall"},
	Cardinality:     Cardinality{MaxSeries: 20000, IdleTimeout: 15 * time.Minute},
	Filters: Filters{
		Include: Match{PIDs: []uint32{}, Comms: []string{}, Cgroups: []string{}, Units: []string{}, Syscalls: []string{}},
		Exclude: Match{PIDs: []uint32{}, Comms: []string{}, Cgroups: []string{}, Units: []string{}, Syscalls: []string{}},
	},
	Events: Events{
		Errors: true, Slow: time.Second,
		IgnoreErrnos: []string{"EAGAIN", "EINTR", "ETIMEDOUT", "EINPROGRESS", "ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ERESTART_RESTARTBLOCK"},
		RateLimit:    1000, PathMax: 256, Buffer: 10000, RingBufferBytes: 1 << 20,
	},
}

func TestDefaultIsTheDocumentedConfig(t *testing.T) {
	if got := Default(); !reflect.DeepEqual(got, documented) {
		t.Errorf("Default() = %+v, want %+v", got, documented)
	}
	// The embedded file is what `sysobsd` prints as its default: it must
	// parse on its own, not only over Default().
	got, err := parse("default.yml", DefaultYAML(), Config{})
	if err != nil {
		t.Fatalf("parse(DefaultYAML()) = %v", err)
	}
	if !reflect.DeepEqual(got, documented) {
		t.Errorf("parse(DefaultYAML()) = %+v, want %+v", got, documented)
	}
}

func TestDefaultYAMLIsACopy(t *testing.T) {
	b := DefaultYAML()
	for i := range b {
		b[i] = '!'
	}
	if got := Default(); !reflect.DeepEqual(got, documented) {
		t.Errorf("after scribbling on DefaultYAML(), Default() = %+v", got)
	}
}

func TestEmptyDocumentsGiveTheDefaults(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":         "",
		"newline":       "\n",
		"comments only": "# nothing here\n\n# at all\n",
		"null":          "~\n",
		"document mark": "---\n",
		"document end":  "---\n...\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Parse("empty.yml", []byte(doc))
			if err != nil {
				t.Fatalf("Parse(%q) = %v", doc, err)
			}
			if !reflect.DeepEqual(got, documented) {
				t.Errorf("Parse(%q) = %+v, want the defaults %+v", doc, got, documented)
			}
		})
	}
}

func TestPartialConfigOverridesOnlyWhatItSets(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := documented
		f(&c)
		return c
	}
	tests := []struct {
		name string
		doc  string
		want Config
	}{
		{"latency every call", "latency: true\n", with(func(c *Config) { c.Latency = LatencyEvery })},
		{"latency off", "latency: false\n", with(func(c *Config) { c.Latency = LatencyOff })},
		{"latency yaml 1.1 off", "latency: off\n", with(func(c *Config) { c.Latency = LatencyOff })},
		{"latency null keeps default", "latency: ~\n", documented},
		{"latency sampled", "latency: sampled\n", with(func(c *Config) { c.Latency = LatencySampled })},
		{"latency sampled, one in 64", "latency: sampled\nlatency_sample_every: 64\n", with(func(c *Config) {
			c.Latency, c.LatencySampleEvery = LatencySampled, 64
		})},
		{"latency sampled, slow events of 50ms", "latency: sampled\nevents:\n  enabled: true\n  slow: 50ms\n", with(func(c *Config) {
			c.Latency, c.Events.Enabled, c.Events.Slow = LatencySampled, true, 50*time.Millisecond
		})},
		{"fold interval", "fold_interval: 250ms\n", with(func(c *Config) { c.FoldInterval = 250 * time.Millisecond })},
		{"fold interval lowest", "fold_interval: 100ms\n", with(func(c *Config) { c.FoldInterval = 100 * time.Millisecond })},
		{"fold interval highest", "fold_interval: 10m\n", with(func(c *Config) { c.FoldInterval = 10 * time.Minute })},
		{"fold interval compound", "fold_interval: 1m30s\n", with(func(c *Config) { c.FoldInterval = 90 * time.Second })},
		{"one map size", "maps:\n  stats_entries: 1024\n", with(func(c *Config) { c.Maps.StatsEntries = 1024 })},
		{"no call slots", "maps:\n  call_slots_per_cpu: 0\n", with(func(c *Config) { c.Maps.CallSlotsPerCPU = 0 })},
		{"fewest call slots", "maps:\n  call_slots_per_cpu: 16\n", with(func(c *Config) { c.Maps.CallSlotsPerCPU = 16 })},
		{"most call slots", "maps:\n  call_slots_per_cpu: 1048576\n", with(func(c *Config) { c.Maps.CallSlotsPerCPU = 1 << 20 })},
		{"other map size", "maps:\n  errors_entries: 16777216\n", with(func(c *Config) { c.Maps.ErrorsEntries = 1 << 24 })},
		{"ring buffer smallest", "maps:\n  ring_buffer_bytes: 4096\n", with(func(c *Config) { c.Maps.RingBufferBytes = 4096 })},
		{"ring buffer largest", "maps:\n  ring_buffer_bytes: 1073741824\n", with(func(c *Config) { c.Maps.RingBufferBytes = 1 << 30 })},
		{"hex size", "maps:\n  stats_entries: 0x10000\n", documented},
		{"exponent size", "maps:\n  stats_entries: 1e6\n", with(func(c *Config) { c.Maps.StatsEntries = 1000000 })},
		{"whole float size", "maps:\n  stats_entries: 4096.0\n", with(func(c *Config) { c.Maps.StatsEntries = 4096 })},
		{"empty maps section", "maps:\n  # stats_entries: 1024\n", documented},
		{"null maps section", "maps: ~\n", documented},
		{"key without a value keeps its default", "labels:\nfilters:\n  include:\n    pids:\n", documented},
		{"flow mapping", "{latency: false, maps: {errors_entries: 2048}}\n", with(func(c *Config) {
			c.Latency = LatencyOff
			c.Maps.ErrorsEntries = 2048
		})},
		{"everything", "latency: false\nfold_interval: 2s\nmaps:\n  stats_entries: 2048\n  errors_entries: 4096\n  ring_buffer_bytes: 8192\n",
			with(func(c *Config) {
				c.Latency, c.FoldInterval = LatencyOff, 2*time.Second
				c.Maps = Maps{CallSlotsPerCPU: 8192, StatsEntries: 2048, ErrorsEntries: 4096, GroupStatsEntries: 8192, GroupErrorsEntries: 4096, RingBufferBytes: 8192}
			})},
		{"labels and filters", "labels: [comm, unit, pid]\ncardinality:\n  max_series: 10\n  idle_timeout: 0s\nfilters:\n  exclude:\n    comms: [sshd]\n    syscalls: [futex]\n",
			with(func(c *Config) {
				c.Labels = []string{"comm", "unit", "pid"}
				c.Cardinality = Cardinality{MaxSeries: 10}
				c.Filters.Exclude.Comms = []string{"sshd"}
				c.Filters.Exclude.Syscalls = []string{"futex"}
			})},
		{"trailing document end", "latency: false\n...\n", with(func(c *Config) { c.Latency = LatencyOff })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("partial.yml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.doc, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) =\n  %+v, want\n  %+v", tt.doc, got, tt.want)
			}
		})
	}
}

// TestBadConfigErrorsNameFileLineAndKey checks that every rejected config
// says where (file and line) and what (the key, or the YAML problem).
func TestBadConfigErrorsNameFileLineAndKey(t *testing.T) {
	const topKeys = "allowed: cardinality, events, filters, fold_interval, histogram_labels, labels, latency, latency_sample_every, maps, native_histograms"
	const mapsKeys = "allowed: call_slots_per_cpu, errors_entries, group_errors_entries, group_stats_entries, ring_buffer_bytes, stats_entries"
	tests := []struct {
		name string
		doc  string
		line int
		// want are substrings of the message: the key path and the reason.
		want []string
	}{
		// Labels, cardinality and filters.
		{"unknown label", "labels: [comm, host]\n", 1, []string{"labels[1]", `unknown label "host"`, "allowed: comm, unit, container, cgroup, pid"}},
		{"unknown label on its own line", "labels:\n  - comm\n  - hostname\n", 3, []string{"labels[1]", `unknown label "hostname"`}},
		{"label twice", "labels: [comm, comm]\n", 1, []string{"labels[1]", `label "comm" given twice`}},
		{"labels not a list", "labels: comm\n", 1, []string{"labels"}},
		{"process label on the histogram", "histogram_labels: [syscall, comm]\n", 1, []string{"histogram_labels[1]", `unknown label "comm"`, "allowed: syscall"}},
		{"zero series cap", "cardinality:\n  max_series: 0\n", 2, []string{"cardinality.max_series", "0 is out of range"}},
		{"negative series cap", "cardinality:\n  max_series: -5\n", 2, []string{"cardinality.max_series"}},
		{"idle timeout too short", "cardinality:\n  idle_timeout: 10s\n", 2, []string{"cardinality.idle_timeout", "too short"}},
		{"idle timeout not a duration", "cardinality:\n  idle_timeout: soon\n", 2, []string{"cardinality.idle_timeout"}},
		{"unknown cardinality key", "cardinality:\n  max: 5\n", 2, []string{`unknown key "max" in key cardinality`, "allowed: idle_timeout, max_series"}},
		{"unknown filter side", "filters:\n  only:\n    comms: [a]\n", 2, []string{`unknown key "only" in key filters`, "allowed: exclude, include"}},
		{"unknown filter list", "filters:\n  exclude:\n    users: [root]\n", 3, []string{`unknown key "users" in key filters.exclude`, "allowed: cgroups, comms, pids, syscalls, units"}},
		{"pid zero", "filters:\n  include:\n    pids: [1, 0]\n", 3, []string{"filters.include.pids[1]", "0 is not a process id"}},
		{"pid negative", "filters:\n  include:\n    pids: [-1]\n", 3, []string{"filters.include.pids"}},
		{"comm too long", "filters:\n  exclude:\n    comms: [abcdefghijklmnopq]\n", 3, []string{"filters.exclude.comms[0]", "1 to 15 bytes"}},
		{"empty comm", "filters:\n  exclude:\n    comms: ['']\n", 3, []string{"filters.exclude.comms[0]"}},
		{"relative cgroup path", "filters:\n  include:\n    cgroups: [system.slice]\n", 3, []string{"filters.include.cgroups[0]", "starting with /"}},
		{"unit with a slash", "filters:\n  exclude:\n    units: [system.slice/nginx.service]\n", 3, []string{"filters.exclude.units[0]", "no /"}},
		{"filters not a mapping", "filters: [comms]\n", 1, []string{"filters must be a mapping"}},
		{"unknown syscall", "filters:\n  exclude:\n    syscalls: [read, futexx]\n", 3, []string{"filters.exclude.syscalls[1]", `unknown syscall "futexx"`}},

		// Latency.
		{"unknown latency mode", "latency: some\n", 1, []string{"latency", `"some" is not a latency mode; allowed: true, false, sampled`}},
		{"latency as a list", "latency: [true]\n", 1, []string{"latency", "a list is not a latency mode"}},
		{"sample rate not a power of two", "latency: sampled\nlatency_sample_every: 10\n", 2, []string{"latency_sample_every", "10 must be a power of two from 2 to 65536"}},
		{"sample rate of one", "latency_sample_every: 1\n", 1, []string{"latency_sample_every", "power of two from 2"}},
		{"short slow events with sampled latency", "latency: sampled\nevents:\n  enabled: true\n  slow: 20ms\n", 4, []string{"events.slow", "20ms is too short for latency: sampled", "one call in 16", "allowed: 0 (none) or 50ms and more"}},

		// Events.
		{"unknown errno to ignore", "events:\n  ignore_errnos: [EAGAIN, EFOO]\n", 2, []string{"events.ignore_errnos[1]", `unknown errno "EFOO"`}},
		{"path_max too large", "events:\n  path_max: 4096\n", 2, []string{"events.path_max", "allowed: 1 to 512"}},
		{"negative slow", "events:\n  slow: -1s\n", 2, []string{"events.slow", "negative"}},
		{"negative rate limit", "events:\n  rate_limit: -1\n", 2, []string{"events.rate_limit"}},
		{"events ring buffer not a power of two", "events:\n  ring_buffer_bytes: 5000\n", 2, []string{"events.ring_buffer_bytes", "power of two"}},
		{"unknown events key", "events:\n  enable: true\n", 2, []string{`unknown key "enable" in key events`}},

		// Unknown keys, with the keys allowed at that place.
		{"unknown top-level key", "bogus: 1\n", 1, []string{`unknown key "bogus" in the top level`, topKeys}},
		{"unknown key after comments", "# sysobsd\n\nlatency: true\nfold_intervall: 1s\n", 4, []string{`unknown key "fold_intervall"`, topKeys}},
		{"key names are case-sensitive", "Latency: true\n", 1, []string{`unknown key "Latency"`, topKeys}},
		{"nested key at the top level", "stats_entries: 2048\n", 1, []string{`unknown key "stats_entries" in the top level`, topKeys}},
		{"unknown nested key", "maps:\n  stats_entry: 2048\n", 2, []string{`unknown key "stats_entry" in key maps`, mapsKeys}},
		{"unknown nested key after good ones", "maps:\n  stats_entries: 2048\n  errors_entries: 2048\n  ringbuffer: 4096\n", 4, []string{`unknown key "ringbuffer" in key maps`, mapsKeys}},
		{"top-level key in maps", "maps:\n  latency: true\n", 2, []string{`unknown key "latency" in key maps`, mapsKeys}},
		{"merge key", "maps:\n  <<: {stats_entries: 2048}\n", 2, []string{`unknown key "<<" in key maps`, mapsKeys}},

		// Wrong types.
		{"quoted string for bool", "latency: \"true\"\n", 1, []string{"latency: ", `"true" is not a latency mode`}},
		{"word for bool", "latency: maybe\n", 1, []string{"latency: ", `"maybe" is not a latency mode; allowed: true, false, sampled`}},
		{"number for bool", "latency: 1\n", 1, []string{"latency: ", `"1" is not a latency mode`}},
		{"sequence for bool", "latency: [true]\n", 1, []string{"latency: ", "a list is not a latency mode"}},
		{"mapping for bool", "\nlatency: {on: true}\n", 2, []string{"latency: ", "a mapping is not a latency mode"}},
		{"negative uint32", "maps:\n  stats_entries: -1\n", 2, []string{"maps.stats_entries: ", "`-1` into uint32"}},
		{"uint32 overflow", "maps:\n  errors_entries: 4294967296\n", 2, []string{"maps.errors_entries: ", "into uint32"}},
		{"huge number", "maps:\n  ring_buffer_bytes: 99999999999999999999999\n", 2, []string{"maps.ring_buffer_bytes: ", "into uint32"}},
		{"string for uint32", "maps:\n  errors_entries: many\n", 2, []string{"maps.errors_entries: ", "`many` into uint32"}},
		{"fraction for uint32", "maps:\n  stats_entries: 2048.5\n", 2, []string{"maps.stats_entries: 2048.5 is not a whole number"}},
		{"unit suffix on size", "maps:\n  ring_buffer_bytes: 256KiB\n", 2, []string{"maps.ring_buffer_bytes: ", "`256KiB` into uint32"}},
		{"bare number for duration", "fold_interval: 5\n", 1, []string{"fold_interval: ", "`5` into a duration such as 1s or 500ms"}},
		{"fraction for duration", "fold_interval: 1.5\n", 1, []string{"fold_interval: ", "`1.5` into a duration such as 1s or 500ms"}},
		{"bad duration unit", "fold_interval: 1x\n", 1, []string{"fold_interval: ", "`1x` into a duration such as 1s or 500ms"}},
		{"bool for duration", "fold_interval: true\n", 1, []string{"fold_interval: ", "into a duration such as 1s or 500ms"}},

		// Out of range.
		{"fold interval too short", "fold_interval: 50ms\n", 1, []string{"fold_interval: 50ms is out of range; allowed: 100ms to 10m"}},
		{"fold interval too long", "latency: true\nfold_interval: 11m\n", 2, []string{"fold_interval: 11m0s is out of range; allowed: 100ms to 10m"}},
		{"fold interval zero", "fold_interval: 0s\n", 1, []string{"fold_interval: 0s is out of range"}},
		{"fold interval negative", "fold_interval: -1s\n", 1, []string{"fold_interval: -1s is out of range"}},
		{"call slots not a power of two", "maps:\n  call_slots_per_cpu: 1000\n", 2, []string{"maps.call_slots_per_cpu: 1000 must be 0 (off) or a power of two from 16 to 1048576"}},
		{"call slots too few", "maps:\n  call_slots_per_cpu: 8\n", 2, []string{"maps.call_slots_per_cpu: 8 must be 0 (off)"}},
		{"call slots too many", "maps:\n  call_slots_per_cpu: 2097152\n", 2, []string{"maps.call_slots_per_cpu: 2097152 must be"}},
		{"stats entries too few", "maps:\n  stats_entries: 1023\n", 2, []string{"maps.stats_entries: 1023 is out of range; allowed: 1024 to 16777216"}},
		{"stats entries too many", "maps:\n  stats_entries: 16777217\n", 2, []string{"maps.stats_entries: 16777217 is out of range"}},
		{"errors entries zero", "maps:\n  errors_entries: 0\n", 2, []string{"maps.errors_entries: 0 is out of range; allowed: 1024 to 16777216"}},
		{"errors entries too many", "maps:\n\n  errors_entries: 33554432\n", 3, []string{"maps.errors_entries: 33554432 is out of range"}},
		{"ring buffer not a power of two", "maps:\n  ring_buffer_bytes: 262145\n", 2, []string{"maps.ring_buffer_bytes: 262145 must be a power of two from 4096 to 1073741824"}},
		{"ring buffer multiple of page not power of two", "maps:\n  ring_buffer_bytes: 12288\n", 2, []string{"maps.ring_buffer_bytes: 12288 must be a power of two"}},
		{"ring buffer power of two too small", "maps:\n  ring_buffer_bytes: 2048\n", 2, []string{"maps.ring_buffer_bytes: 2048 must be a power of two from 4096"}},
		{"ring buffer power of two too large", "maps:\n  ring_buffer_bytes: 2147483648\n", 2, []string{"maps.ring_buffer_bytes: 2147483648 must be a power of two"}},
		{"ring buffer zero", "maps:\n  ring_buffer_bytes: 0\n", 2, []string{"maps.ring_buffer_bytes: 0 must be a power of two"}},

		// Duplicates.
		{"duplicate top-level key", "latency: true\nlatency: false\n", 2, []string{`key "latency" given twice in the top level`}},
		{"duplicate nested key", "maps:\n  stats_entries: 2048\n  stats_entries: 4096\n", 3, []string{`key "maps.stats_entries" given twice in key maps`}},
		{"duplicate section", "maps:\n  stats_entries: 2048\nmaps:\n  errors_entries: 2048\n", 3, []string{`key "maps" given twice in the top level`}},

		// Wrong shapes.
		{"sequence at the top level", "- latency: true\n", 1, []string{"the top level must be a mapping of cardinality, events, filters, fold_interval, histogram_labels, labels, latency, latency_sample_every, maps, native_histograms"}},
		{"scalar at the top level", "latency\n", 1, []string{"the top level must be a mapping of cardinality, events, filters, fold_interval, histogram_labels, labels, latency, latency_sample_every, maps, native_histograms"}},
		{"sequence for maps", "maps: [1, 2]\n", 1, []string{"key maps must be a mapping of call_slots_per_cpu, errors_entries, group_errors_entries, group_stats_entries, ring_buffer_bytes, stats_entries"}},
		{"block sequence for maps", "maps:\n  - stats_entries: 2048\n", 2, []string{"key maps must be a mapping of"}},
		{"scalar for maps", "maps: 4096\n", 1, []string{"key maps must be a mapping of"}},
		{"two documents", "latency: true\n---\nlatency: false\n", 2, []string{"more than one YAML document; sysobsd reads one"}},
		{"two documents after comments", "# a\n# b\nlatency: true\n---\nlatency: false\n", 4, []string{"more than one YAML document"}},
		{"trailing empty document", "latency: true\n---\n", 2, []string{"more than one YAML document"}},

		// Malformed YAML: no key to name, the YAML problem instead.
		{"tab indentation", "maps:\n\tstats_entries: 2048\n", 2, []string{"found character that cannot start any token"}},
		{"unclosed quote", "latency: true\nfold_interval: \"1s\n", 2, []string{"found unexpected end of stream"}},
		{"unclosed flow mapping", "maps: {stats_entries: 2048\n", 1, []string{"did not find expected ',' or '}'"}},
		{"bad indentation", "latency: true\n  fold_interval: 1s\n", 2, []string{"mapping values are not allowed in this context"}},
		{"missing colon", "latency true\nfold_interval: 1s\n", 2, []string{"mapping values are not allowed in this context"}},
	}
	if len(tests) < 30 {
		t.Fatalf("only %d bad configs", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("bad.yml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.doc, cfg)
			}
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("Parse(%q) returned %+v with its error, want the zero Config", tt.doc, cfg)
			}
			msg := err.Error()
			wants := append([]string{"config bad.yml", "line " + strconv.Itoa(tt.line) + ":"}, tt.want...)
			for _, w := range wants {
				if !strings.Contains(msg, w) {
					t.Errorf("Parse(%q) error\n  %s\ndoes not contain\n  %s", tt.doc, msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Parse(%q) error spans lines: %q", tt.doc, msg)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "sysobsd.yml")
	if err := os.WriteFile(good, []byte("fold_interval: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("latency: true\nmaps:\n  bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("empty path is the defaults", func(t *testing.T) {
		got, err := Load("")
		if err != nil || !reflect.DeepEqual(got, documented) {
			t.Errorf("Load(\"\") = %+v, %v; want the defaults", got, err)
		}
	})
	t.Run("file over the defaults", func(t *testing.T) {
		got, err := Load(good)
		want := documented
		want.FoldInterval = 5 * time.Second
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Load(%s) = %+v, %v; want %+v", good, got, err, want)
		}
	})
	t.Run("errors name the path", func(t *testing.T) {
		_, err := Load(bad)
		if err == nil {
			t.Fatal("Load of a bad file succeeded")
		}
		if want := "config " + bad + " line 3: unknown key \"bogus\" in key maps"; !strings.Contains(err.Error(), want) {
			t.Errorf("Load error %q does not contain %q", err, want)
		}
	})

	unreadable := []struct {
		name string
		path string
		is   error
	}{
		{"missing file", filepath.Join(dir, "missing.yml"), fs.ErrNotExist},
		{"directory", dir, nil},
		{"below a file", filepath.Join(good, "sysobsd.yml"), nil},
	}
	if os.Geteuid() != 0 { // root reads any file
		locked := filepath.Join(dir, "locked.yml")
		if err := os.WriteFile(locked, []byte("latency: true\n"), 0o000); err != nil {
			t.Fatal(err)
		}
		unreadable = append(unreadable, struct {
			name string
			path string
			is   error
		}{"no permission", locked, fs.ErrPermission})
	}
	for _, tt := range unreadable {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(tt.path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", tt.path, cfg)
			}
			msg := err.Error()
			for _, w := range []string{tt.path, "give --config.file a readable YAML file"} {
				if !strings.Contains(msg, w) {
					t.Errorf("Load(%s) error %q does not contain %q", tt.path, msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Load(%s) error spans lines: %q", tt.path, msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Load(%s) error %v is not %v", tt.path, err, tt.is)
			}
		})
	}
}

// FuzzParse checks that Parse never panics, that every error is one line
// naming the config, and that every accepted config is valid and survives a
// round trip through YAML.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	for _, s := range []string{
		"", "latency: false\n", "fold_interval: 250ms\n", "maps:\n  stats_entries: 2048\n",
		"maps: ~\n", "bogus: 1\n", "maps:\n  bogus: 1\n", "latency: [true]\n",
		"maps:\n  stats_entries: -1\n", "maps:\n  stats_entries: 1.5\n", "fold_interval: 5\n",
		"maps:\n  ring_buffer_bytes: 262145\n", "latency: true\nlatency: false\n",
		"latency: true\n---\nlatency: false\n", "maps:\n\tstats_entries: 1\n", "latency: \"abc\n",
		"maps: &m {stats_entries: 2048}\n", "maps: *m\n", "{latency: false, maps: {errors_entries: 2048}}",
		"maps:\n  stats_entries: 1e6\n  errors_entries: 0x400\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yml", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "config fuzz.yml") {
				t.Errorf("error does not name the config: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			return
		}
		if err := cfg.validate("fuzz.yml", &yaml.Node{}); err != nil {
			t.Fatalf("Parse accepted %+v, which does not validate: %v", cfg, err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal %+v: %v", cfg, err)
		}
		again, err := parse("round trip", out, Config{})
		if err != nil {
			t.Fatalf("accepted config %+v does not parse back from\n%s: %v", cfg, out, err)
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("round trip: %+v became %+v", cfg, again)
		}
	})
}

// deploy/sysobsd.yml is the documented example users copy: it must be the
// embedded defaults, every key commented.
func TestDeployExampleIsTheDefault(t *testing.T) {
	example, err := os.ReadFile("../../deploy/sysobsd.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, DefaultYAML()) {
		t.Errorf("deploy/sysobsd.yml differs from internal/config/default.yml: copy one onto the other")
	}
}
