package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/vex"
)

// VEXConfig is the policy file's top-level vex section: OpenVEX documents
// that apply under every rule.
type VEXConfig struct {
	// Files are files and directories (every *.json under them), relative
	// to the policy file's directory when not absolute.
	Files []string `json:"files"`
}

// maxVEXPaths bounds the vex.files list.
const maxVEXPaths = 100

func (p *parser) vexConfig(n *yaml.Node, path string) *VEXConfig {
	c := &VEXConfig{}
	p.fields(n, path, handlers{
		"files": func(v *yaml.Node, path string) {
			files, nodes := p.strings(v, path)
			if len(files) > maxVEXPaths {
				p.fail(v, path, "%d entries, at most %d", len(files), maxVEXPaths)
				return
			}
			for i, f := range files {
				if f == "" {
					p.fail(nodes[i], fmt.Sprintf("%s[%d]", path, i), "empty path")
					continue
				}
				c.Files = append(c.Files, f)
			}
		},
	})
	return c
}

// LoadVEX reads the documents the vex section names (relative paths from
// base, the policy file's directory). The policy's version then covers
// their content, so a changed document re-decides stored verdicts like any
// policy change. Call it before the policy is put in force.
func (p *Policy) LoadVEX(base string) error {
	if p == nil || p.VEX == nil || len(p.VEX.Files) == 0 {
		return nil
	}
	loaded, err := vex.LoadFiles(base, p.VEX.Files, "policy:")
	if err != nil {
		return err
	}
	p.vexSources = loaded.Sources
	sum := sha256.Sum256([]byte(contentHash(p.Rules) + "\x00vex\x00" + loaded.Hash))
	p.version = "sha256:" + hex.EncodeToString(sum[:])
	return nil
}

// VEXSources is the documents LoadVEX read.
func (p *Policy) VEXSources() []vex.Source {
	if p == nil {
		return nil
	}
	return p.vexSources
}
