package ckpt

import (
	"bufio"
	"fmt"
	"os"
	"testing"
)

// Helper modes: the test binary re-executes itself with CKPT_HELPER set to
// play a second process (the crash-test writer, a lock holder).
func TestMain(m *testing.M) {
	switch os.Getenv("CKPT_HELPER") {
	case "":
		os.Exit(m.Run())
	case "writer":
		if err := crashWriter(os.Getenv("CKPT_DIR"), os.Getenv("CKPT_SEED")); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hold":
		s, err := Open(testOptions(os.Getenv("CKPT_DIR")))
		if err != nil {
			fmt.Fprintln(os.Stderr, "hold:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		// Hold the store until the parent closes stdin.
		bufio.NewReader(os.Stdin).ReadString('\n')
		s.Close()
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown CKPT_HELPER")
		os.Exit(2)
	}
}
