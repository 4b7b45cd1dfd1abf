package offlane_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package has exactly one package doc comment, which
// says what the package owns (house style).
func TestPackageDocs(t *testing.T) {
	docs := map[string][]string{} // dir -> files with a package doc comment
	pkgs := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		pkgs[dir] = true
		if f.Doc != nil && !ast.IsGenerated(f) {
			docs[dir] = append(docs[dir], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		t.Fatal("run from the module root")
	}
	for dir := range pkgs {
		switch n := len(docs[dir]); {
		case n == 0:
			t.Errorf("package %s has no package doc comment: add a doc.go saying what it owns", dir)
		case n > 1:
			t.Errorf("package %s has %d package doc comments (%v): keep exactly one", dir, n, docs[dir])
		}
	}
}
