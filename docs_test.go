package loyalty_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`) // [text](target "title")
	mdRefLink = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*(\S+)`)    // [name]: target
	htmlLink  = regexp.MustCompile(`(?:href|src)="([^"]+)"`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
	codeFence = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```")
)

// TestMarkdownLinks keeps the documentation self-contained: every relative link in every
// Markdown file resolves to a file inside the repository (and, with a #fragment into a Markdown
// file, to one of its headings). A link that leaves the repository (../something beyond its
// root) fails: a clone would not have it. Links to web sites are not followed.
func TestMarkdownLinks(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			files = append(files, path)
		}
		return nil
	})
	if len(files) < 4 {
		t.Fatalf("found only %d Markdown files under %s", len(files), root)
	}
	anchors := map[string]map[string]bool{}
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := codeFence.ReplaceAllString(string(b), "") // code samples are not links
		rel, _ := filepath.Rel(root, file)
		var targets []string
		for _, re := range []*regexp.Regexp{mdLink, mdRefLink, htmlLink} {
			for _, m := range re.FindAllStringSubmatch(text, -1) {
				targets = append(targets, m[1])
			}
		}
		for _, target := range targets {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if r, err := filepath.Rel(root, dest); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					t.Errorf("%s: link %q leaves the repository: write what it says into the project's own docs", rel, target)
					continue
				}
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: no such file in the repository", rel, target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			if anchors[dest] == nil {
				anchors[dest] = headingAnchors(t, dest)
			}
			if !anchors[dest][frag] {
				t.Errorf("%s: link %q: %s has no heading with the anchor #%s", rel, target, filepath.Base(dest), frag)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: the link pattern is broken")
	}
}

// headingAnchors returns the anchors GitHub makes of a Markdown file's headings: lower case,
// punctuation dropped, spaces as hyphens, and -1, -2, … for repeats.
func headingAnchors(t *testing.T, file string) map[string]bool {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out, seen := map[string]bool{}, map[string]int{}
	for _, m := range mdHeading.FindAllStringSubmatch(codeFence.ReplaceAllString(string(b), ""), -1) {
		a := slug(m[1])
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestAPIContentsListEverySection: the contents at the top of docs/API.md link every section and
// every endpoint (## and ### headings), so a section added later is not left out of it.
// slug is the anchor GitHub makes of a heading: lower case, punctuation dropped, spaces as hyphens.
func slug(heading string) string {
	var s strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			s.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			s.WriteRune(r)
		}
	}
	return s.String()
}

func TestAPIContentsListEverySection(t *testing.T) {
	b, err := os.ReadFile("docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "## Contents"), strings.Index(text, "\n---")
	if start < 0 || end < start {
		t.Fatal("docs/API.md has no contents block (## Contents … ---)")
	}
	contents := text[start:end]
	body := codeFence.ReplaceAllString(text[end:], "")
	seen := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^(#{2,3})\s+(.+?)\s*$`).FindAllStringSubmatch(body, -1) {
		anchor := slug(m[2])
		if n := seen[anchor]; n > 0 {
			anchor += "-" + strconv.Itoa(n)
		}
		seen[slug(m[2])]++
		if !strings.Contains(contents, "(#"+anchor+")") {
			t.Errorf("docs/API.md: the contents do not link the section %q (#%s)", m[2], anchor)
		}
	}
	if len(seen) < 30 {
		t.Fatalf("found only %d sections in docs/API.md", len(seen))
	}
}
