package hub_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestBatchTxFlushesEveryLedgerRead: a pushed batch inserts its deltas at its end (batch.go), and
// batchTx flushes them before anything reads the ledger. Every storage method whose statements
// name the ledger or the tables its inserts keep (the qualifying totals, the lots; found in hub/sqlite's and
// hub/postgres's source: the method's own text, the functions and constants it uses, and theirs)
// must be one batchTx overrides, or a new read would miss a batch's own deltas.
func TestBatchTxFlushesEveryLedgerRead(t *testing.T) {
	tables := regexp.MustCompile(`\b(deltas|member_qualifying|member_lots)\b`)
	// Methods whose statements name a column called deltas, not the table.
	notTheLedger := []string{"InsertConflict", "Conflicts", "ConflictsPage"}

	flushed := map[string]bool{}
	for _, d := range parseDir(t, ".", "batch.go") {
		if f, ok := d.(*ast.FuncDecl); ok && f.Recv != nil && receiver(f) == "batchTx" {
			flushed[f.Name.Name] = true
		}
	}
	for _, dir := range []string{"sqlite", "postgres"} {
		decls := parseDir(t, dir, "")
		// What each declaration names (identifiers and selectors) and whether its own string
		// literals name the tables; methods of tx are keyed "tx.Name" and also reached by name.
		uses := map[string][]string{}
		mentions := map[string]bool{}
		for _, d := range decls {
			names := declNames(d)
			recv := "" // a method's receiver variable: t.Name uses the method Name
			if f, ok := d.(*ast.FuncDecl); ok && f.Recv != nil && len(f.Recv.List[0].Names) > 0 {
				recv = f.Recv.List[0].Names[0].Name
			}
			var used []string
			own := false
			fields := map[*ast.Ident]bool{} // x.Name: a field or method of x, not a declaration of the package
			ast.Inspect(d, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if n.Kind == token.STRING {
						s, err := strconv.Unquote(n.Value)
						own = own || err == nil && tables.MatchString(s)
					}
				case *ast.SelectorExpr:
					fields[n.Sel] = true
					if x, ok := n.X.(*ast.Ident); ok && recv != "" && x.Name == recv {
						used = append(used, "tx."+n.Sel.Name)
					}
				case *ast.Ident:
					if !fields[n] {
						used = append(used, n.Name)
					}
				}
				return true
			})
			for _, name := range names {
				uses[name] = append(uses[name], used...)
				mentions[name] = mentions[name] || own
			}
		}
		for changed := true; changed; { // what uses a declaration that names the tables names them
			changed = false
			for name, used := range uses {
				if mentions[name] {
					continue
				}
				for _, u := range used {
					if u != name && mentions[u] {
						mentions[name], changed = true, true
						break
					}
				}
			}
		}
		for name, m := range mentions {
			method, ok := cutPrefix(name, "tx.")
			if !ok || !m || !ast.IsExported(method) || slices.Contains(notTheLedger, method) {
				continue
			}
			if !flushed[method] {
				t.Errorf("hub/%s: Tx.%s reads or writes the ledger, but batchTx (batch.go) does not flush a batch's pending deltas before it", dir, method)
			}
		}
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return s, false
	}
	return s[len(prefix):], true
}

// parseDir parses the non-test Go files of dir (only the file named only, if it is given) and
// returns their top-level declarations.
func parseDir(t *testing.T, dir, only string) []ast.Decl {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var decls []ast.Decl
	fset := token.NewFileSet()
	for _, path := range files {
		base := filepath.Base(path)
		if regexp.MustCompile(`_test\.go$`).MatchString(base) || only != "" && base != only {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		decls = append(decls, f.Decls...)
	}
	return decls
}

// declNames returns the names a declaration declares: "tx.Name" for a method of tx, the name of a
// function, or of each constant and variable.
func declNames(d ast.Decl) []string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv != nil {
			return []string{receiver(d) + "." + d.Name.Name}
		}
		return []string{d.Name.Name}
	case *ast.GenDecl:
		var names []string
		for _, s := range d.Specs {
			if v, ok := s.(*ast.ValueSpec); ok {
				for _, n := range v.Names {
					names = append(names, n.Name)
				}
			}
		}
		return names
	}
	return nil
}

// receiver returns the type name of a method's receiver.
func receiver(f *ast.FuncDecl) string {
	e := f.Recv.List[0].Type
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}
