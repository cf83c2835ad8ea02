// Package config reads sysobsd's YAML configuration: embedded defaults,
// strict keys, and errors that name the file, line, key and allowed values.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

//go:embed default.yml
var defaultYAML []byte

// DefaultYAML is the embedded default configuration, comments included.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole configuration.
type Config struct {
	Latency LatencyMode `yaml:"latency"`
	// LatencySampleEvery: with latency: sampled, one call in this many is
	// timed (a power of two).
	LatencySampleEvery uint32        `yaml:"latency_sample_every"`
	FoldInterval       time.Duration `yaml:"fold_interval"`
	Maps               Maps          `yaml:"maps"`
	// Labels are the process labels of the counters.
	Labels []string `yaml:"labels"`
	// HistogramLabels are the labels of the latency histogram.
	HistogramLabels []string `yaml:"histogram_labels"`
	// NativeHistograms adds native buckets to the histogram's classic ones.
	NativeHistograms bool        `yaml:"native_histograms"`
	Cardinality      Cardinality `yaml:"cardinality"`
	Filters          Filters     `yaml:"filters"`
	Events           Events      `yaml:"events"`
}

// LatencyMode is how calls are timed: every one (latency: true), none
// (false), or one in latency_sample_every at random, scaled into an estimate
// (sampled).
type LatencyMode uint8

const (
	LatencyOff LatencyMode = iota
	LatencyEvery
	LatencySampled
)

// On reports whether calls are timed at all (sys_enter is attached).
func (m LatencyMode) On() bool { return m != LatencyOff }

func (m LatencyMode) String() string {
	switch m {
	case LatencyEvery:
		return "true"
	case LatencySampled:
		return "sampled"
	}
	return "false"
}

// MarshalYAML writes the mode as it is configured.
func (m LatencyMode) MarshalYAML() (any, error) {
	if m == LatencySampled {
		return "sampled", nil
	}
	return m.On(), nil
}

// UnmarshalYAML takes a boolean (YAML 1.1 spellings too) or "sampled".
func (m *LatencyMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "sampled" {
		*m = LatencySampled
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		kind := "a mapping"
		if n.Kind == yaml.SequenceNode {
			kind = "a list"
		}
		return fmt.Errorf("line %d: %s is not a latency mode; allowed: true, false, sampled", n.Line, kind)
	}
	var on bool
	if n.Decode(&on) != nil {
		return fmt.Errorf("line %d: %q is not a latency mode; allowed: true, false, sampled", n.Line, n.Value)
	}
	*m = LatencyOff
	if on {
		*m = LatencyEvery
	}
	return nil
}

// Events are failed and slow calls reported one by one, with arguments.
type Events struct {
	Enabled         bool          `yaml:"enabled"`
	Errors          bool          `yaml:"errors"`
	Slow            time.Duration `yaml:"slow"`
	IgnoreErrnos    []string      `yaml:"ignore_errnos"`
	RateLimit       int           `yaml:"rate_limit"`
	PathMax         int           `yaml:"path_max"`
	Buffer          int           `yaml:"buffer"`
	RingBufferBytes uint32        `yaml:"ring_buffer_bytes"`
}

// Cardinality bounds the series sysobsd exports.
type Cardinality struct {
	MaxSeries   int           `yaml:"max_series"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Filters choose what is counted, in the kernel.
type Filters struct {
	Include Match `yaml:"include"`
	Exclude Match `yaml:"exclude"`
}

// Match lists what a filter matches. Within a list any entry matches; an
// include filter needs a match in every list it sets.
type Match struct {
	PIDs     []uint32 `yaml:"pids"`
	Comms    []string `yaml:"comms"`
	Cgroups  []string `yaml:"cgroups"`
	Units    []string `yaml:"units"`
	Syscalls []string `yaml:"syscalls"`
}

// Empty reports whether the match lists nothing.
func (m Match) Empty() bool {
	return len(m.PIDs)+len(m.Comms)+len(m.Cgroups)+len(m.Units)+len(m.Syscalls) == 0
}

// LabelNames are the labels the counters may carry.
var LabelNames = []string{"comm", "unit", "container", "cgroup", "pid"}

// HistogramLabelNames are the labels the histogram may carry: per-process
// histograms would cost a second hash update on every syscall.
var HistogramLabelNames = []string{"syscall"}

// Maps sizes the kernel maps.
type Maps struct {
	// CallSlotsPerCPU sizes call_slots (loader.Options.CallSlots).
	CallSlotsPerCPU    uint32 `yaml:"call_slots_per_cpu"`
	StatsEntries       uint32 `yaml:"stats_entries"`
	ErrorsEntries      uint32 `yaml:"errors_entries"`
	GroupStatsEntries  uint32 `yaml:"group_stats_entries"`
	GroupErrorsEntries uint32 `yaml:"group_errors_entries"`
	RingBufferBytes    uint32 `yaml:"ring_buffer_bytes"`
}

// Default returns the embedded defaults.
func Default() Config {
	c, err := parse("(embedded default)", defaultYAML, Config{})
	if err != nil {
		panic("embedded default config is invalid: " + err.Error()) // a build defect, caught by tests
	}
	return c
}

// Load reads path over the defaults; an empty path means the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w; give --config.file a readable YAML file", err)
	}
	return parse(path, data, Default())
}

// Parse reads data (named name in errors) over the defaults.
func Parse(name string, data []byte) (Config, error) {
	return parse(name, data, Default())
}

func parse(name string, data []byte, base Config) (Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return base, nil // an empty file: the defaults
		}
		return Config{}, fmt.Errorf("config %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config %s line %d: more than one YAML document; sysobsd reads one", name, extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return base, nil
	}
	if err := checkKeys(name, root, reflect.TypeOf(Config{}), ""); err != nil {
		return Config{}, err
	}
	dropNullValues(root)
	cfg := base
	if err := root.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("config %s: %s", name, cleanDecodeError(err))
	}
	if err := cfg.validate(name, root); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// checkKeys walks the document against the struct's yaml tags, so an unknown
// key is reported with its line and the keys allowed at that place.
func checkKeys(name string, n *yaml.Node, t reflect.Type, path string) error {
	if t.Kind() != reflect.Struct {
		return checkValue(name, n, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // a section with every key commented out: its defaults
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s line %d: %s must be a mapping of %s", name, n.Line, describe(path), strings.Join(allowedKeys(t), ", "))
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field, ok := fieldByTag(t, k.Value)
		if !ok {
			return fmt.Errorf("config %s line %d: unknown key %q in %s; allowed: %s", name, k.Line, k.Value, describe(path), strings.Join(allowedKeys(t), ", "))
		}
		if seen[k.Value] {
			return fmt.Errorf("config %s line %d: key %q given twice in %s", name, k.Line, join(path, k.Value), describe(path))
		}
		seen[k.Value] = true
		if err := checkKeys(name, v, field.Type, join(path, k.Value)); err != nil {
			return err
		}
	}
	return nil
}

// checkValue decodes one value on its own, so that a value of the wrong type
// is reported with its key: decoding the whole document names only the line.
func checkValue(name string, n *yaml.Node, t reflect.Type, path string) error {
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		msg := strings.TrimPrefix(cleanDecodeError(err), fmt.Sprintf("line %d: ", n.Line))
		return fmt.Errorf("config %s line %d: %s: %s", name, n.Line, path, msg)
	}
	// yaml truncates 1.5 to 1 for an integer; a fraction is a typo, not a size.
	var f float64
	if v.Elem().CanUint() && n.ShortTag() == "!!float" && n.Decode(&f) == nil && f != math.Trunc(f) {
		return fmt.Errorf("config %s line %d: %s: %s is not a whole number", name, n.Line, path, n.Value)
	}
	return nil
}

func describe(path string) string {
	if path == "" {
		return "the top level"
	}
	return "key " + path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func allowedKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		keys = append(keys, strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
	}
	slices.Sort(keys)
	return keys
}

// cleanDecodeError turns yaml's "line 3: cannot unmarshal !!str `x` into
// bool" into "line 3: cannot unmarshal ...", one line.
func cleanDecodeError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	msg = strings.ReplaceAll(msg, "\n", "; ")
	msg = strings.ReplaceAll(msg, "time.Duration", "a duration such as 1s or 500ms")
	return msg
}

// lineOf finds the line of a dotted key path in the document (0 if absent);
// a segment may index a list: "labels[1]".
func lineOf(root *yaml.Node, path string) int {
	n := root
	line := 0
	for _, seg := range strings.Split(path, ".") {
		key, index := seg, -1
		if open := strings.IndexByte(seg, '['); open >= 0 && strings.HasSuffix(seg, "]") {
			key = seg[:open]
			if i, err := strconv.Atoi(seg[open+1 : len(seg)-1]); err == nil {
				index = i
			}
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return 0
		}
		if index >= 0 && n.Kind == yaml.SequenceNode && index < len(n.Content) {
			n = n.Content[index]
			line = n.Line
		}
	}
	return line
}

// SampledSlowFloor is the shortest events.slow that latency: sampled
// allows: every call that long is counted unscaled on any kernel whose tick
// is 10 ms or less (HZ 100 and more): long calls are 2^24 ns and at least 4
// ticks (loader.Probes.LongCall).
const SampledSlowFloor = 50 * time.Millisecond

func (c Config) validate(name string, root *yaml.Node) error {
	bad := func(path, format string, args ...any) error {
		where := fmt.Sprintf("config %s", name)
		if line := lineOf(root, path); line > 0 {
			where += fmt.Sprintf(" line %d", line)
		}
		return fmt.Errorf("%s: %s: %s", where, path, fmt.Sprintf(format, args...))
	}
	if n := c.LatencySampleEvery; n < 2 || n > 1<<16 || n&(n-1) != 0 {
		return bad("latency_sample_every", "%d must be a power of two from 2 to 65536", n)
	}
	if c.Latency == LatencySampled && c.Events.Enabled && c.Events.Slow > 0 && c.Events.Slow < SampledSlowFloor {
		return bad("events.slow", "%s is too short for latency: sampled, which times one call in %d and counts only calls of %s or more by the kernel's tick; allowed: 0 (none) or %s and more, or latency: true", c.Events.Slow, c.LatencySampleEvery, SampledSlowFloor, SampledSlowFloor)
	}
	if c.FoldInterval < 100*time.Millisecond || c.FoldInterval > 10*time.Minute {
		return bad("fold_interval", "%s is out of range; allowed: 100ms to 10m", c.FoldInterval)
	}
	if n := c.Maps.CallSlotsPerCPU; n != 0 && (n < 16 || n > 1<<20 || n&(n-1) != 0) {
		return bad("maps.call_slots_per_cpu", "%d must be 0 (off) or a power of two from 16 to 1048576", n)
	}
	if c.Maps.StatsEntries < 1024 || c.Maps.StatsEntries > 1<<24 {
		return bad("maps.stats_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.StatsEntries)
	}
	if c.Maps.ErrorsEntries < 1024 || c.Maps.ErrorsEntries > 1<<24 {
		return bad("maps.errors_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.ErrorsEntries)
	}
	if c.Maps.GroupStatsEntries < 1024 || c.Maps.GroupStatsEntries > 1<<24 {
		return bad("maps.group_stats_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.GroupStatsEntries)
	}
	if c.Maps.GroupErrorsEntries < 1024 || c.Maps.GroupErrorsEntries > 1<<24 {
		return bad("maps.group_errors_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.GroupErrorsEntries)
	}
	rb := c.Maps.RingBufferBytes
	if rb < 4096 || rb > 1<<30 || rb&(rb-1) != 0 {
		return bad("maps.ring_buffer_bytes", "%d must be a power of two from 4096 to 1073741824", rb)
	}
	if err := checkList(bad, "labels", c.Labels, LabelNames); err != nil {
		return err
	}
	if err := checkList(bad, "histogram_labels", c.HistogramLabels, HistogramLabelNames); err != nil {
		return err
	}
	if c.Cardinality.MaxSeries < 1 || c.Cardinality.MaxSeries > 10_000_000 {
		return bad("cardinality.max_series", "%d is out of range; allowed: 1 to 10000000", c.Cardinality.MaxSeries)
	}
	if c.Cardinality.IdleTimeout != 0 && c.Cardinality.IdleTimeout < time.Minute {
		return bad("cardinality.idle_timeout", "%s is too short; allowed: 0 (never) or at least 1m", c.Cardinality.IdleTimeout)
	}
	if err := c.Events.validate(bad); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		m    Match
	}{{"filters.include", c.Filters.Include}, {"filters.exclude", c.Filters.Exclude}} {
		if err := f.m.validate(bad, f.path); err != nil {
			return err
		}
	}
	return nil
}

type badFunc func(path, format string, args ...any) error

func (e Events) validate(bad badFunc) error {
	if e.Slow < 0 {
		return bad("events.slow", "%s is negative; allowed: 0 (no slow events) or a duration such as 1s", e.Slow)
	}
	for i, name := range e.IgnoreErrnos {
		if _, ok := syscalls.ErrnoNumber(name); !ok {
			return bad(fmt.Sprintf("events.ignore_errnos[%d]", i), "unknown errno %q; give symbolic names such as EAGAIN", name)
		}
	}
	if e.RateLimit < 0 || e.RateLimit > 1_000_000 {
		return bad("events.rate_limit", "%d is out of range; allowed: 0 (no limit) to 1000000 per CPU per second", e.RateLimit)
	}
	if e.PathMax < 1 || e.PathMax > 512 {
		return bad("events.path_max", "%d is out of range; allowed: 1 to 512", e.PathMax)
	}
	if e.Buffer < 0 || e.Buffer > 1_000_000 {
		return bad("events.buffer", "%d is out of range; allowed: 0 to 1000000", e.Buffer)
	}
	rb := e.RingBufferBytes
	if rb < 4096 || rb > 1<<30 || rb&(rb-1) != 0 {
		return bad("events.ring_buffer_bytes", "%d must be a power of two from 4096 to 1073741824", rb)
	}
	return nil
}

func checkList(bad badFunc, path string, values, allowed []string) error {
	seen := make(map[string]bool)
	for i, v := range values {
		at := fmt.Sprintf("%s[%d]", path, i)
		if !slices.Contains(allowed, v) {
			return bad(at, "unknown label %q; allowed: %s", v, strings.Join(allowed, ", "))
		}
		if seen[v] {
			return bad(at, "label %q given twice", v)
		}
		seen[v] = true
	}
	return nil
}

func (m Match) validate(bad badFunc, path string) error {
	for i, pid := range m.PIDs {
		if pid == 0 {
			return bad(fmt.Sprintf("%s.pids[%d]", path, i), "0 is not a process id")
		}
	}
	for i, comm := range m.Comms {
		if comm == "" || len(comm) > 15 {
			return bad(fmt.Sprintf("%s.comms[%d]", path, i), "%q must be 1 to 15 bytes, as the kernel keeps it", comm)
		}
	}
	for i, cg := range m.Cgroups {
		if !strings.HasPrefix(cg, "/") {
			return bad(fmt.Sprintf("%s.cgroups[%d]", path, i), "%q must be a path from the cgroup2 root, starting with /", cg)
		}
	}
	for i, unit := range m.Units {
		if unit == "" || len(unit) > 63 || strings.Contains(unit, "/") {
			return bad(fmt.Sprintf("%s.units[%d]", path, i), "%q must be a unit's cgroup name (as systemd escapes it), 1 to 63 bytes, no /", unit)
		}
	}
	for i, name := range m.Syscalls {
		if !syscallKnown(name) {
			return bad(fmt.Sprintf("%s.syscalls[%d]", path, i), "unknown syscall %q on this architecture", name)
		}
	}
	return nil
}

// syscallKnown reports whether a name is a syscall of this host, in either ABI.
func syscallKnown(name string) bool {
	_, native := syscalls.Host().Number(syscalls.Native, name)
	_, compat := syscalls.Host().Number(syscalls.Compat, name)
	return native || compat
}

// dropNullValues removes keys given without a value ("pids:" or "maps: ~"),
// so that they keep their defaults, as an absent key does, instead of being
// zeroed by the decoder.
func dropNullValues(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
			continue
		}
		dropNullValues(v)
		kept = append(kept, k, v)
	}
	n.Content = kept
}
