// Command composecheck validates docker-compose.yml without a Docker engine:
// it loads the file with compose-go, the library `docker compose` itself uses
// (compose-spec schema, interpolation, references between services), then
// holds the stack to vomosync's rules: health checks on every long-running
// service, depends_on conditions that can be met, the environment each
// binary needs, pinned images, and bind mounts that exist.
//
//	composecheck [-out normalized.yaml] docker-compose.yml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/vomosync/vomosync/deployments/tools/contract"
)

func main() {
	out := flag.String("out", "", "write the normalized configuration here (like `docker compose config`)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-out FILE] docker-compose.yml")
		os.Exit(2)
	}
	project, err := load(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	if *out != "" {
		raw, err := project.MarshalYAML()
		if err == nil {
			err = os.WriteFile(*out, raw, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "composecheck:", err)
			os.Exit(1)
		}
	}
	problems := check(project)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "composecheck:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("composecheck: %s valid, %d services\n", flag.Arg(0), len(project.Services))
}

// load parses and validates like `docker compose config`, with an empty
// environment so the file's own defaults are what gets checked.
func load(path string) (*types.Project, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithEnv([]string{}),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func check(p *types.Project) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, b := range contract.Binaries {
		if _, ok := p.Services[b.Name]; !ok {
			fail("service %s is missing", b.Name)
		}
	}
	for name, s := range p.Services {
		if s.Image == "" || !strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest") {
			fail("%s: image %q must carry an explicit tag other than latest", name, s.Image)
		}
		for dep, d := range s.DependsOn {
			target := p.Services[dep]
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					fail("%s: depends on %s being healthy, but %s has no healthcheck", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != types.RestartPolicyNo {
					fail("%s: waits for %s to complete, but %s is not one-shot (restart: \"no\")", name, dep, dep)
				}
			case types.ServiceConditionStarted:
			default:
				fail("%s: depends_on %s has no condition", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				// Docker would create a missing directory silently and
				// mount it empty: a typo here loses config without a word.
				fail("%s: bind mount source %s does not exist", name, v.Source)
			}
		}
		b, ours := contract.Lookup(name)
		if !ours {
			continue
		}
		if s.Build == nil || s.Build.Args["SERVICE"] == nil || *s.Build.Args["SERVICE"] != b.Module {
			fail("%s: must build deployments/docker/Dockerfile with SERVICE=%s", name, b.Module)
		}
		for _, key := range b.Env {
			if v, ok := s.Environment[key]; !ok || v == nil || *v == "" {
				fail("%s: environment %s is not set", name, key)
			}
		}
		if b.OneShot {
			if s.Restart != types.RestartPolicyNo {
				fail("%s: one-shot, needs restart: \"no\"", name)
			}
			continue
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable || !slices.Equal(hc.Test, types.HealthCheckTest{"CMD", "/app", "-healthcheck"}) {
			fail("%s: needs healthcheck test [CMD, /app, -healthcheck] (distroless images have no shell)", name)
		}
		if len(b.Secrets) > 0 {
			if d, ok := s.DependsOn["migrate"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				fail("%s: must wait for migrate to complete successfully", name)
			}
		}
	}
	return errs
}
