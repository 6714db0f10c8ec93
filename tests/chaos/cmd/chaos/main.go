// Command chaos runs the chaos suite: chaos -profile short|long
// [-scenario regexp] [-seed N]. It prints a table per scenario and exits 1
// on any violation (2 on bad usage).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"

	"github.com/vomosync/vomosync/tests/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	profile := flag.String("profile", "short", "short (CI, a few minutes) or long (the issue's workload)")
	pattern := flag.String("scenario", "", "run only scenarios whose name matches this regexp (the baseline always runs)")
	seed := flag.Int64("seed", 1, "seed of the workload, the simulator and the fault schedules")
	keep := flag.Bool("keep", false, "keep every scratch directory (logs, stores); failed ones are always kept")
	head := flag.Bool("head", false, "build the services from the committed HEAD, not the working tree")
	all := flag.Bool("all", false, "with -profile short: also run the long-only scenarios, at the short size")
	list := flag.Bool("list", false, "list the scenarios and exit")
	flag.Parse()
	p, ok := chaos.Profiles[*profile]
	if !ok {
		fmt.Fprintf(os.Stderr, "chaos: -profile %q: want short or long\n", *profile)
		return 2
	}
	var re *regexp.Regexp
	if *pattern != "" {
		var err error
		if re, err = regexp.Compile(*pattern); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: -scenario: %v\n", err)
			return 2
		}
	}
	if *list {
		for _, name := range []string{"short", "long"} {
			for _, s := range chaos.Scenarios(chaos.Profiles[name], re) {
				if name == "long" && s.Short {
					continue
				}
				fmt.Printf("%-22s %-5s %s\n", s.Name, name, s.Description)
			}
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := chaos.RunProfile(ctx, chaos.Config{Profile: p, Seed: *seed, Pattern: re, Keep: *keep, Out: os.Stdout, FromHead: *head, All: *all})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	for _, r := range results {
		if r.Failed() {
			return 1
		}
	}
	return 0
}
