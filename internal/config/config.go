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
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yml
var defaultYAML []byte

// DefaultYAML is the embedded default configuration, comments included.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole configuration.
type Config struct {
	Latency      bool          `yaml:"latency"`
	FoldInterval time.Duration `yaml:"fold_interval"`
	Maps         Maps          `yaml:"maps"`
}

// Maps sizes the kernel maps.
type Maps struct {
	StatsEntries    uint32 `yaml:"stats_entries"`
	ErrorsEntries   uint32 `yaml:"errors_entries"`
	RingBufferBytes uint32 `yaml:"ring_buffer_bytes"`
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

// lineOf finds the line of a dotted key path in the document (0 if absent).
func lineOf(root *yaml.Node, path string) int {
	n := root
	line := 0
	for _, key := range strings.Split(path, ".") {
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
	}
	return line
}

func (c Config) validate(name string, root *yaml.Node) error {
	bad := func(path, format string, args ...any) error {
		where := fmt.Sprintf("config %s", name)
		if line := lineOf(root, path); line > 0 {
			where += fmt.Sprintf(" line %d", line)
		}
		return fmt.Errorf("%s: %s: %s", where, path, fmt.Sprintf(format, args...))
	}
	if c.FoldInterval < 100*time.Millisecond || c.FoldInterval > 10*time.Minute {
		return bad("fold_interval", "%s is out of range; allowed: 100ms to 10m", c.FoldInterval)
	}
	if c.Maps.StatsEntries < 1024 || c.Maps.StatsEntries > 1<<24 {
		return bad("maps.stats_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.StatsEntries)
	}
	if c.Maps.ErrorsEntries < 1024 || c.Maps.ErrorsEntries > 1<<24 {
		return bad("maps.errors_entries", "%d is out of range; allowed: 1024 to 16777216", c.Maps.ErrorsEntries)
	}
	rb := c.Maps.RingBufferBytes
	if rb < 4096 || rb > 1<<30 || rb&(rb-1) != 0 {
		return bad("maps.ring_buffer_bytes", "%d must be a power of two from 4096 to 1073741824", rb)
	}
	return nil
}
