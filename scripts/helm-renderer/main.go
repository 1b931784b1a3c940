// helm-renderer runs helm's own command line, in process, once per request: `helm template` for many
// releases without paying helm's start-up (about 70 ms of a 110 ms render) each time, as Argo CD's
// repo-server renders many apps in one process.
//
// Byte-identity with the helm CLI comes by construction: every request builds helm's root command
// with helm.sh/helm/v4/pkg/cmd.NewRootCmd and runs it exactly as helm's main does
// (cmd/helm/helm.go), with the request's argv, working directory and environment, stdin on
// /dev/null and file descriptors 1 and 2 on capture files. What helm keeps in package variables
// between commands is reset first (resetGlobals). Requests are served one at a time.
//
// Protocol (stdin/stdout of this process; gitops_validate.helmrenderer speaks it):
//
//	request:  one JSON object per line: {"argv": ["/path/helm", "template", ...], "cwd": "/abs", "env": {"K": "V"}}
//	response: a header line "helm-renderer <status> <stdout bytes> <stderr bytes>\n", then those bytes.
//
// status is what the helm CLI would have exited with. The process exits when stdin closes.
// With arguments it is the helm CLI, once (`helm-renderer version` says which helm it embeds).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"

	"github.com/fatih/color"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	// As helm's main: client auth plugins register themselves.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"helm.sh/helm/v4/pkg/cli"
	helmcmd "helm.sh/helm/v4/pkg/cmd"
	"helm.sh/helm/v4/pkg/kube"
)

type request struct {
	Argv []string          `json:"argv"`
	Cwd  string            `json:"cwd"`
	Env  map[string]string `json:"env"`
}

// capture is a file descriptor 1 or 2 points at while helm runs: an unlinked temporary file.
type capture struct {
	fd   int
	file *os.File
}

func newCapture(fd int) (*capture, error) {
	f, err := os.CreateTemp("", "helm-renderer-")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	if err := unix.Dup2(int(f.Fd()), fd); err != nil {
		return nil, err
	}
	return &capture{fd, f}, nil
}

// reset empties the file; fd shares its offset, so both start at 0 again.
func (c *capture) reset() error {
	if err := c.file.Truncate(0); err != nil {
		return err
	}
	_, err := c.file.Seek(0, io.SeekStart)
	return err
}

func (c *capture) bytes() ([]byte, error) {
	st, err := c.file.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	_, err = c.file.ReadAt(buf, 0)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return buf, err
}

func main() {
	if len(os.Args) > 1 {
		os.Exit(runHelm())
	}
	// The protocol keeps private copies of stdin and stdout; helm gets /dev/null as stdin (as
	// the validator runs the helm CLI) and the capture files as stdout and stderr.
	proto, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-renderer:", err)
		os.Exit(2)
	}
	if err := serve(proto); err != nil {
		fmt.Fprintln(proto.log, "helm-renderer:", err)
		os.Exit(2)
	}
}

type channels struct {
	in       *bufio.Reader
	out      *os.File
	log      *os.File
	stdout   *capture
	stderr   *capture
	noColor  bool
	baseArgs []string
}

func setup() (*channels, error) {
	dup := func(fd int, name string) (*os.File, error) {
		nfd, err := unix.Dup(fd)
		if err != nil {
			return nil, err
		}
		unix.CloseOnExec(nfd)
		return os.NewFile(uintptr(nfd), name), nil
	}
	in, err := dup(0, "protocol-in")
	if err != nil {
		return nil, err
	}
	out, err := dup(1, "protocol-out")
	if err != nil {
		return nil, err
	}
	logf, err := dup(2, "log")
	if err != nil {
		return nil, err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	if err := unix.Dup2(int(null.Fd()), 0); err != nil {
		return nil, err
	}
	stdout, err := newCapture(1)
	if err != nil {
		return nil, err
	}
	stderr, err := newCapture(2)
	if err != nil {
		return nil, err
	}
	return &channels{bufio.NewReaderSize(in, 1<<20), out, logf, stdout, stderr, color.NoColor, os.Args}, nil
}

func serve(ch *channels) error {
	for {
		line, err := ch.in.ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			return fmt.Errorf("a request that is not JSON: %v", err)
		}
		if len(req.Argv) == 0 {
			return errors.New("a request without argv")
		}
		status, err := handle(ch, req)
		if err != nil {
			return err
		}
		stdout, err := ch.stdout.bytes()
		if err != nil {
			return err
		}
		stderr, err := ch.stderr.bytes()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(ch.out, "helm-renderer %d %d %d\n", status, len(stdout), len(stderr)); err != nil {
			return err
		}
		if _, err := ch.out.Write(stdout); err != nil {
			return err
		}
		if _, err := ch.out.Write(stderr); err != nil {
			return err
		}
	}
}

// handle prepares the process for one request and runs helm; its exit status.
func handle(ch *channels, req request) (int, error) {
	if err := ch.stdout.reset(); err != nil {
		return 0, err
	}
	if err := ch.stderr.reset(); err != nil {
		return 0, err
	}
	os.Clearenv()
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := os.Setenv(k, req.Env[k]); err != nil {
			return 0, fmt.Errorf("setting %s: %v", k, err)
		}
	}
	if err := os.Chdir(req.Cwd); err != nil {
		return 0, fmt.Errorf("changing to %s: %v", req.Cwd, err)
	}
	os.Args = req.Argv
	resetGlobals(ch)
	return runHelm(), nil
}

// runHelm is helm's main (cmd/helm/helm.go at the pinned version) with os.Exit turned into a
// returned status. A panic is what the helm CLI dies of with status 2, its trace on stderr.
func runHelm() (status int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "panic: %v\n\n%s", r, debug.Stack())
			status = 2
		}
	}()
	kube.ManagedFieldsManager = "helm"

	cmd, err := helmcmd.NewRootCmd(os.Stdout, os.Args[1:], helmcmd.SetupLogging)
	if err != nil {
		slog.Warn("command failed", slog.Any("error", err))
		return 1
	}

	if err := cmd.Execute(); err != nil {
		var cerr helmcmd.CommandError
		if errors.As(err, &cerr) {
			return cerr.ExitCode
		}
		return 1
	}
	return 0
}

// resetGlobals puts back what a fresh helm process starts with, where helm keeps it in package
// variables that one command changes for the next:
//   - pkg/cmd's settings (cli.New() reads the environment; every flag's default is its value),
//   - cobra's initializers (NewRootCmd appends one per call; each Execute runs them all),
//   - fatih/color's NoColor (--color=always sets it).
func resetGlobals(ch *channels) {
	helmSettings = cli.New()
	cobraInitializers = nil
	cobraFinalizers = nil
	color.NoColor = ch.noColor
	_ = cobra.Command{} // cobra is imported for the linknamed variables
}
