package cmd

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Shell completion: `fhirbulk completion bash|zsh|fish|powershell` prints
// Cobra's script, which asks the binary (its hidden __complete command)
// for the candidates of each word. The commands register what they
// complete beyond subcommands and flags with the functions here.

var shells = []string{"bash", "zsh", "fish", "powershell"}

func (a *app) completionCmd(root *cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script",
		Long: `Print the script that makes the shell complete fhirbulk's commands, flags,
resource types (the R4 names, and the database's types when a connection is
configured), flag values, manifest files and import ids. To use it:

  bash:        source <(fhirbulk completion bash)   (needs the bash-completion package)
               or: fhirbulk completion bash > /etc/bash_completion.d/fhirbulk
  zsh:         fhirbulk completion zsh > "${fpath[1]}/_fhirbulk"   (with compinit on)
  fish:        fhirbulk completion fish > ~/.config/fish/completions/fhirbulk.fish
  powershell:  fhirbulk completion powershell | Out-String | Invoke-Expression`,
		Args:      exactArgs(1, "one shell: "+strings.Join(shells, ", ")),
		ValidArgs: shells,
	}
	c.RunE = a.run(func(_ context.Context, args []string) error {
		switch args[0] {
		case "bash":
			return root.GenBashCompletionV2(a.stdout, true)
		case "zsh":
			return root.GenZshCompletion(a.stdout)
		case "fish":
			return root.GenFishCompletion(a.stdout, true)
		case "powershell":
			return root.GenPowerShellCompletionWithDesc(a.stdout)
		}
		return usagef("completion: %q is not one of the shells: %s", args[0], strings.Join(shells, ", "))
	})
	return c
}

// completeTimeout bounds the database's part of a completion: a shell
// waits for it at every Tab.
const completeTimeout = time.Second

// typeNames are the candidates for a resource type: the R4 names, and the
// types in the database when a connection is configured (--db,
// DATABASE_URL or a PG* variable), read within completeTimeout and left
// out, silently, when that fails.
func (a *app) typeNames(ctx context.Context) []string {
	names := r4types.Names()
	dsn := pg.ResolveDSN(a.db, a.getenv)
	if !pg.Configured(dsn) {
		return names
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	conn, err := pg.Connect(ctx, dsn)
	if err != nil {
		return names
	}
	defer conn.Close(context.Background()) // read only
	tx, err := pg.BeginReadOnly(ctx, conn)
	if err != nil {
		return names
	}
	defer tx.Rollback(context.Background()) // read only
	types, err := store.Inventory(ctx, tx, false)
	if err != nil {
		return names
	}
	for _, t := range types {
		if !slices.Contains(names, t.Type) {
			names = append(names, t.Type)
		}
	}
	slices.Sort(names)
	return names
}

// withPrefix keeps the candidates that start with prefix.
func withPrefix(candidates []string, prefix string) []string {
	var out []string
	for _, c := range candidates {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// completeTypeArg completes a TYPE argument (the first only).
func (a *app) completeTypeArg(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(a.typeNames(c.Context()), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeTypeList completes a flag that takes types separated by commas
// (export --type Patient,Obs<Tab>): the last one.
func (a *app) completeTypeList(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	done, last := "", toComplete
	if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	var out []string
	for _, t := range withPrefix(a.typeNames(c.Context()), last) {
		out = append(out, done+t)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeValues completes a flag that takes one of values.
func completeValues(values ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// mustComplete registers f as the completion of c's flag name.
func mustComplete(c *cobra.Command, name string, f cobra.CompletionFunc) {
	if err := c.RegisterFlagCompletionFunc(name, f); err != nil {
		panic(err) // a flag of that name must exist
	}
}

// completeFiles completes file names ending in one of exts (folders too).
func completeFiles(exts ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}

func completeDirs(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// completeImportIDs completes an import id from the state folder
// (--state-dir when given before it, else the default one).
func (a *app) completeImportIDs(stateDir *string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dir, err := bulkimport.StateDir(*stateDir, a.getenv)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := bulkimport.Store{Dir: dir}.List()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []string
		for _, st := range list {
			ids = append(ids, st.ID+"\t"+st.Status)
		}
		return withPrefix(ids, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}
