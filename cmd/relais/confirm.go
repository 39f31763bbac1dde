package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Destructive actions (purge, abandon, deny, conflicts discard) ask on a
// terminal and take -y in scripts; with neither they refuse, saying so.

// destructive gives cmd a -y flag and makes its action ask first: what
// says, from the arguments, what will be done.
func (e *env) destructive(cmd *cobra.Command, what func(args []string) string) {
	yes := cmd.Flags().BoolP("yes", "y", false, "do it without asking (for scripts)")
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := e.confirm(what(args), *yes); err != nil {
			return err
		}
		return run(c, args)
	}
}

// confirm asks whether to do what, unless yes.
func (e *env) confirm(what string, yes bool) error {
	if yes {
		return nil
	}
	if !e.terminal {
		return fmt.Errorf("not done: %s. Add -y to do it without asking (there is no terminal to ask on)", what)
	}
	fmt.Fprintf(e.out, "%s. Do it? [y/N] ", upperFirst(what))
	line, _ := bufio.NewReader(e.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("not done: %s was not confirmed", what)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
