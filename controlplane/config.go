package controlplane

import (
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"
)

// LoadTokens reads the `serve --tokens` YAML file: a map from token to grant,
//
//	tok-admin: {project_id: admin, roles: [admin]}
//	tok-a:     {project_id: proj-a, roles: [member]}
//	tok-ro:    {project_id: proj-a, roles: [reader]}
//
// Unknown keys, empty project ids and roles other than admin, member and reader are
// refused.
func LoadTokens(path string) (map[string]Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	var m map[string]Token
	if err := yaml.UnmarshalStrict(b, &m); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("tokens file %s: no tokens (want `TOKEN: {project_id: P, roles: [member]}` lines)", path)
	}
	for tok, t := range m {
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("tokens file %s: token %.4s…: %w", path, tok, err)
		}
	}
	return m, nil
}

func (t Token) validate() error {
	if t.ProjectID == "" {
		return fmt.Errorf("project_id is empty")
	}
	if len(t.Roles) == 0 {
		return fmt.Errorf("roles is empty (want admin, member or reader)")
	}
	for _, r := range t.Roles {
		if !slices.Contains([]string{"admin", "member", "reader"}, r) {
			return fmt.Errorf("role %q: want admin, member or reader", r)
		}
	}
	return nil
}
