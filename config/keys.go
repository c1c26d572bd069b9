package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxKeyProblems bounds how many unknown keys one error lists.
const maxKeyProblems = 10

func unknownKeys(raw []byte) error { return UnknownKeys(raw, Config{}, "server config") }

// UnknownKeys finds the keys of the YAML document raw that no field of
// into's type takes, and names the allowed ones: yaml.v3's own message
// ("field listn not found in type config.Config") names a Go type the user
// never sees. file names the document in the message ("server config").
// Malformed YAML is left to the decoder, which reports it with its line;
// keep KnownFields on it as the backstop.
func UnknownKeys(raw []byte, into any, file string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	var problems []string
	walkKeys(doc.Content[0], reflect.TypeOf(into), "", file, &problems)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(problems, "\n"))
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walkKeys checks node n against type t. The recursion follows the Go type,
// which is finite, not the document.
func walkKeys(n *yaml.Node, t reflect.Type, path, file string, problems *[]string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // Duration, ByteSize: scalars with their own parser
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			walkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), file, problems)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkKeys(n.Content[i+1], t.Elem(), keyPath(path, shortKey(n.Content[i].Value)), file, problems)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" { // a merge key: its mapping(s) belong here
				walkKeys(v, t, path, file, problems)
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						walkKeys(m, t, path, file, problems)
					}
				}
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				if len(*problems) < maxKeyProblems {
					*problems = append(*problems, fmt.Sprintf("line %d: unknown key %q in %s; allowed: %s",
						k.Line, k.Value, sectionName(path, file), strings.Join(fieldNames(t), ", ")))
				}
				continue
			}
			walkKeys(v, ft, keyPath(path, k.Value), file, problems)
		}
	}
}

// shortKey abbreviates a map key in messages: in the API tokens file the
// keys are token hashes, or by mistake the tokens themselves.
func shortKey(k string) string {
	if r := []rune(k); len(r) > 8 {
		return string(r[:8]) + "…"
	}
	return k
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sectionName(path, file string) string {
	if path == "" {
		return file
	}
	return path
}

// yamlFields maps each YAML key of struct t to its field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = t.Field(i).Type
		}
	}
	return m
}

// fieldNames lists struct t's YAML keys in declaration order, as the
// README and the example configuration present them.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name) // yaml.v3's default
	}
	return name
}

// TopLevelKeys lists the keys a server configuration file may have at its
// top level, so a tool handed this file where another is expected can
// recognise it.
func TopLevelKeys() []string { return fieldNames(reflect.TypeOf(Config{})) }
