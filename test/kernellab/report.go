package kernellab

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The guest's run script frames each test binary's `-test.v` output:
//
//	=== KERNELLAB BEGIN <package dir>
//	=== RUN   TestKernelX ... --- PASS: TestKernelX (1.20s) ...   (the binary's own output)
//	=== KERNELLAB END <package dir> rc=<exit status>
//	=== KERNELLAB DONE failed=<packages that failed>
//
// and /init reports problems before the tests as "=== KERNELLAB ERROR <message>".
// report turns that stream into host subtests: one per package, one per top-level guest
// test inside it, each failing, passing or skipping as it did in the guest.
const (
	frameBegin = "=== KERNELLAB BEGIN "
	frameEnd   = "=== KERNELLAB END "
	frameDone  = "=== KERNELLAB DONE "
	frameError = "=== KERNELLAB ERROR "
	framePfx   = "=== KERNELLAB "
)

var (
	reRun    = regexp.MustCompile(`^=== RUN   (\S+)$`)
	reResult = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(`)
	rePause  = regexp.MustCompile(`^=== PAUSE (\S+)$`)
	reEnd    = regexp.MustCompile(`^=== KERNELLAB END (\S+) rc=(-?\d+)$`)
	reDone   = regexp.MustCompile(`^=== KERNELLAB DONE failed=(\d+)$`)
)

// reporter is the part of *testing.T that report drives; tests of report use a recorder.
type reporter interface {
	// Run runs f as a subtest named name and waits for it.
	Run(name string, f func(reporter)) bool
	Log(args ...any)
	Errorf(format string, args ...any)
	Fail()
	// Skip marks the test skipped and ends it (runtime.Goexit for *testing.T): callers
	// call it last.
	Skip(args ...any)
}

// tReporter adapts *testing.T.
type tReporter struct{ t *testing.T }

func (r tReporter) Run(name string, f func(reporter)) bool {
	return r.t.Run(name, func(t *testing.T) { f(tReporter{t}) })
}
func (r tReporter) Log(args ...any)                   { r.t.Helper(); r.t.Log(args...) }
func (r tReporter) Errorf(format string, args ...any) { r.t.Helper(); r.t.Errorf(format, args...) }
func (r tReporter) Fail()                             { r.t.Fail() }
func (r tReporter) Skip(args ...any)                  { r.t.Helper(); r.t.Skip(args...) }

// lineSource yields the guest's output lines with one line of look-ahead.
type lineSource struct {
	ch     <-chan string
	peeked *string
	closed bool
}

func (s *lineSource) peek() (string, bool) {
	if s.peeked != nil {
		return *s.peeked, true
	}
	if s.closed {
		return "", false
	}
	l, ok := <-s.ch
	if !ok {
		s.closed = true
		return "", false
	}
	s.peeked = &l
	return l, true
}

func (s *lineSource) next() (string, bool) {
	l, ok := s.peek()
	s.peeked = nil
	return l, ok
}

// summary is what the stream said overall.
type summary struct {
	done        bool // DONE frame seen: the guest ran every package to its end
	failedPkgs  int  // from the DONE frame
	packages    []string
	failedTests []string // "pkg/TestX"
	errors      []string // ERROR frames
}

// report consumes src until it ends and mirrors it onto r.
func report(r reporter, src *lineSource) summary {
	var sum summary
	for {
		line, ok := src.next()
		if !ok {
			return sum
		}
		switch {
		case strings.HasPrefix(line, frameBegin):
			pkg := strings.TrimSpace(strings.TrimPrefix(line, frameBegin))
			sum.packages = append(sum.packages, pkg)
			r.Run(pkg, func(pr reporter) { reportPackage(pr, pkg, src, &sum) })
		case strings.HasPrefix(line, frameDone):
			if m := reDone.FindStringSubmatch(line); m != nil {
				sum.done = true
				sum.failedPkgs, _ = strconv.Atoi(m[1])
			} else {
				r.Errorf("guest: malformed frame %q", line)
			}
		case strings.HasPrefix(line, frameError):
			msg := strings.TrimPrefix(line, frameError)
			sum.errors = append(sum.errors, msg)
			r.Errorf("guest: %s", msg)
		default:
			r.Log(line)
		}
	}
}

// reportPackage mirrors one test binary's output, up to its END frame.
func reportPackage(pr reporter, pkg string, src *lineSource, sum *summary) {
	failed, ran := false, 0
	for {
		line, ok := src.peek()
		if !ok {
			pr.Errorf("guest output ended inside package %s: the guest crashed, panicked or ran out of time (the serial console is logged above)", pkg)
			return
		}
		if strings.HasPrefix(line, framePfx) && !strings.HasPrefix(line, frameEnd) {
			pr.Errorf("package %s: its test binary ended without an END frame", pkg)
			return
		}
		src.next()
		if m := reEnd.FindStringSubmatch(line); m != nil {
			rc, _ := strconv.Atoi(m[2])
			switch {
			case m[1] != pkg:
				pr.Errorf("package %s: END frame for %s", pkg, m[1])
			case rc != 0 && !failed:
				pr.Errorf("package %s: test binary exited with status %d although no test reported FAIL (panic, timeout, bad flag or a failure outside a test: see the output above)", pkg, rc)
			case rc == 0 && failed:
				pr.Errorf("package %s: a test reported FAIL but the test binary exited 0", pkg)
			case ran == 0:
				pr.Log("no guest test matched in " + pkg)
			}
			return
		}
		if m := reRun.FindStringSubmatch(line); m != nil && !strings.Contains(m[1], "/") {
			name := m[1]
			ran++
			var res string
			pr.Run(name, func(tr reporter) { res = reportTest(tr, name, src) })
			if res == "FAIL" || res == "" {
				failed = true
				sum.failedTests = append(sum.failedTests, pkg+"/"+name)
			}
			continue
		}
		if m := reResult.FindStringSubmatch(line); m != nil && m[1] == "FAIL" {
			// A result for a test whose output was not bracketed (cannot happen with
			// sequential tests; kept so a failure is never lost).
			failed = true
			sum.failedTests = append(sum.failedTests, pkg+"/"+m[2])
			pr.Errorf("%s", line)
			continue
		}
		pr.Log(line)
	}
}

// reportTest mirrors one top-level guest test: its lines up to its result line and the
// indented lines after it (subtest results). It returns PASS, FAIL, SKIP or "" when the
// test never finished.
func reportTest(tr reporter, name string, src *lineSource) string {
	result, lastLog := "", ""
	for {
		line, ok := src.peek()
		if !ok || strings.HasPrefix(line, framePfx) {
			break
		}
		if result != "" && !strings.HasPrefix(line, " ") {
			break // the next top-level line belongs to the package
		}
		if m := rePause.FindStringSubmatch(line); m != nil && m[1] == name {
			src.next()
			tr.Errorf("guest test %s called t.Parallel at top level: guest tests run one at a time so their output can be attributed (use parallel subtests instead)", name)
			continue
		}
		src.next()
		if m := reResult.FindStringSubmatch(line); m != nil && m[2] == name {
			result = m[1]
		} else if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "---") && !strings.HasPrefix(t, "===") {
			lastLog = t
		}
		tr.Log(line)
	}
	switch result {
	case "FAIL":
		tr.Fail()
	case "SKIP":
		tr.Skip(fmt.Sprintf("skipped in the guest: %s", lastLog))
	case "":
		tr.Errorf("guest test %s did not finish (no --- PASS/FAIL line): its binary crashed or timed out", name)
	}
	return result
}
