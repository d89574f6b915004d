package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/replay-sgd/replay/api"
)

// errUsage marks errors in how replayctl was called (unknown command or
// flag, bad flag value); main exits 2 for them and 1 for everything else.
var errUsage = errors.New("usage")

// usageError is a one-line complaint about the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	addr   string
	token  string
	output string // table | json | csv
}

// env is what a command runs with: where to write, the global flags, and a
// few hooks that tests replace.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	g              globals
	help           bool // --help / -h, on every command
	// isTerminal reports whether w is an interactive terminal (progress
	// bars); tests force either answer.
	isTerminal func(w io.Writer) bool
}

// command is one replayctl subcommand.
type command struct {
	name     string // "status", "run start"
	synopsis string // arguments after the name
	summary  string // one line for the command list
	example  string
	run      func(e *env, c *command, args []string) error
}

// commands lists every subcommand in the order of the help text.
func commands() []command {
	return []command{
		runStartCmd, runsCmd, statusCmd, resetCmd, trajectoryCmd, exportCmd,
		waitCmd, plotCmd, pauseCmd, resumeCmd, deleteCmd, verifyCmd,
		reportCmd, uiCmd, workersCmd, modelsCmd,
	}
}

func defaultIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// run is replayctl: it parses args, runs one command and returns its error
// (nil after --help). Output goes to stdout, progress and notes to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, isTerminal: defaultIsTerminal}
	return e.main(args)
}

// globalFlags adds the global flags to fs, bound to e.g (so values given
// before the command name are the defaults after it).
func (e *env) globalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&e.g.addr, "addr", e.g.addr, "daemon address: unix:/path, /path.sock or host:port (default $REPLAYD_ADDR, else the daemon's default socket)")
	fs.StringVar(&e.g.token, "token", e.g.token, "bearer token the daemon requires (default $REPLAYD_TOKEN)")
	fs.StringVarP(&e.g.output, "output", "o", e.g.output, "output format: table, json or csv")
	e.help = false
	boolFlag(fs, &e.help, "help", "h", "show help")
}

// switchValue is a boolean flag that pflag lists as plain "--name" (its
// own bool type prints "--name[=true|false]").
type switchValue struct{ p *bool }

func (b switchValue) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}

func (b switchValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", s)
	}
	*b.p = v
	return nil
}

func (b switchValue) Type() string { return "boolfunc" }

// boolFlag defines a boolean switch on fs.
func boolFlag(fs *pflag.FlagSet, p *bool, name, short, usage string) {
	f := fs.VarPF(switchValue{p}, name, short, usage)
	f.NoOptDefVal = "true"
}

func (e *env) main(args []string) error {
	e.g = globals{addr: os.Getenv("REPLAYD_ADDR"), token: os.Getenv("REPLAYD_TOKEN"), output: "table"}
	fs := pflag.NewFlagSet("replayctl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	e.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			e.topHelp(e.stdout)
			return nil
		}
		return usagef("%v (see replayctl --help)", err)
	}
	rest := fs.Args()
	if e.help || (len(rest) > 0 && rest[0] == "help") {
		if len(rest) > 1 && rest[0] == "help" {
			return e.main(append(rest[1:], "--help"))
		}
		e.topHelp(e.stdout)
		return nil
	}
	if len(rest) == 0 {
		e.topHelp(e.stderr)
		return usagef("no command given (see replayctl --help)")
	}
	name, rest := rest[0], rest[1:]
	if name == "run" {
		switch {
		case len(rest) > 0 && rest[0] == "start":
			name, rest = "run start", rest[1:]
		case len(rest) > 0 && (rest[0] == "--help" || rest[0] == "-h"):
			name = "run start"
		default:
			return usagef("unknown command \"run %s\": did you mean \"replayctl run start\"?", strings.Join(rest, " "))
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(e, &c, rest)
		}
	}
	return usagef("unknown command %q (see replayctl --help)", name)
}

func (e *env) topHelp(w io.Writer) {
	fmt.Fprintln(w, "replayctl controls replayd, the backward-SGD replay daemon.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: replayctl [--addr ADDR] [--token T] [-o table|json|csv] COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Global flags (before or after the command):")
	fs := pflag.NewFlagSet("replayctl", pflag.ContinueOnError)
	e.globalFlags(fs)
	fmt.Fprint(w, fs.FlagUsages())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run `replayctl COMMAND --help` for a command's flags and an example.")
}

// flags returns a FlagSet for command c that also accepts the global flags.
func (e *env) flags(c *command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main, on one line
	fs.SortFlags = false
	return fs
}

// parse parses the command's flags (plus the global ones) and validates the
// output format. It returns errHelped after printing --help.
func (e *env) parse(c *command, fs *pflag.FlagSet, args []string) error {
	e.globalFlags(fs)
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) || (err == nil && e.help) {
		e.commandHelp(c, fs)
		return errHelped
	}
	if err != nil {
		return usagef("%s: %v (see replayctl %s --help)", c.name, err, c.name)
	}
	switch e.g.output {
	case "table", "json", "csv":
	default:
		return usagef("%s: -o %q: want table, json or csv", c.name, e.g.output)
	}
	return nil
}

// errHelped is returned by parse after printing help; commands return nil.
var errHelped = errors.New("help printed")

// helped turns errHelped into success.
func helped(err error) error {
	if errors.Is(err, errHelped) {
		return nil
	}
	return err
}

func (e *env) commandHelp(c *command, fs *pflag.FlagSet) {
	w := e.stdout
	fmt.Fprintf(w, "Usage: replayctl %s %s\n\n%s\n\nFlags:\n%s\nExample:\n  %s\n",
		c.name, c.synopsis, c.summary, fs.FlagUsages(), strings.ReplaceAll(c.example, "\n", "\n  "))
}

// client returns an API client for the global --addr and --token.
func (e *env) client() *api.Client {
	addr := e.g.addr
	if addr == "" {
		addr = api.DefaultAddr()
	}
	return api.NewClient(addr, e.g.token)
}

// resolveRun returns name, or the only run when name is empty; with no run
// or several it says what to do.
func (e *env) resolveRun(c *api.Client, name string) (string, error) {
	return e.resolveRunHint(c, name, "--run NAME")
}

// resolveRunHint is resolveRun for commands that take the run another way
// (hint says how, e.g. "RUN" for a positional argument).
func (e *env) resolveRunHint(c *api.Client, name, hint string) (string, error) {
	if name != "" {
		return name, nil
	}
	l, err := c.Runs(e.ctx)
	if err != nil {
		return "", err
	}
	switch len(l.Runs) {
	case 0:
		return "", errors.New("no runs: start one with `replayctl run start --preset quadratic`")
	case 1:
		return l.Runs[0].Name, nil
	}
	names := make([]string, len(l.Runs))
	for i, r := range l.Runs {
		names[i] = r.Name
	}
	sort.Strings(names)
	return "", usagef("%d runs exist (%s): choose one with %s", len(names), strings.Join(names, ", "), hint)
}

// oneArg returns the single optional positional argument.
func oneArg(c *command, args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", nil
	case 1:
		return args[0], nil
	}
	return "", usagef("%s: unexpected arguments %q (see replayctl %s --help)", c.name, args[1:], c.name)
}

// parseRunArg parses the command line of a command whose only argument is
// an optional RUN and which has no flags of its own (status, pause, resume,
// delete). It returns "" when RUN is left out, and errHelped after --help
// (pass the error through helped).
func (e *env) parseRunArg(c *command, args []string) (string, error) {
	fs := e.flags(c)
	if err := e.parse(c, fs, args); err != nil {
		return "", err
	}
	return oneArg(c, fs.Args())
}

// noArgs rejects positional arguments.
func noArgs(c *command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q (see replayctl %s --help)", c.name, args[0], c.name)
	}
	return nil
}

// writeCSV writes rows with encoding/csv (RFC 4180 quoting: a run name with
// a comma or a quote stays one field) and returns the first error.
func writeCSV(w io.Writer, rows ...[]string) error {
	return csv.NewWriter(w).WriteAll(rows)
}
