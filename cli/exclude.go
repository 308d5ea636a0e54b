package cli

import (
	"context"
	"fmt"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/virt"
)

// runExclude is `virtmq exclude`: see its usage text.
func runExclude(ctx context.Context, env *Env, args []string) int {
	return setExclude(ctx, env, args, true)
}

// runInclude is `virtmq include`: see its usage text.
func runInclude(ctx context.Context, env *Env, args []string) int {
	return setExclude(ctx, env, args, false)
}

func setExclude(ctx context.Context, env *Env, args []string, exclude bool) int {
	name, synopsis, description := "include", "[-c URI] DOMAIN...", `
Remove the exclude label "virtmq exclude" set, so that virtmq manages the
domains' NICs again by the policy. The label is removed with libvirt's
metadata API (no redefine); the next definition change, "virtmq apply" or
the agent's next pass brings the definition to the policy.
Exits 1 when a domain cannot be found or changed.`
	if exclude {
		name, description = "exclude", `
Put virtmq's exclude label on each domain: a
<virtmq:exclude xmlns:virtmq="`+domxml.ExcludeNamespace+`"/> element in
its <metadata>, set with libvirt's metadata API (virDomainSetMetadata), so
no redefine is needed and the fleet policy stays as it is. virtmq-agent,
the libvirt hook and "virtmq plan" then leave every NIC of the domain
alone, as they find it ("excluded by the domain's virtmq label"). The
label is in the persistent definition of a persistent domain and in the
live XML of a running one. "virtmq include DOMAIN" removes it.
Exits 1 when a domain cannot be found or changed.`
	}
	fs := newFlags(env, name, synopsis, description)
	cf := addConnectFlags(fs)
	pos, code, done := parseFlags(env, fs, args, 1, -1, "DOMAIN (one or more domain names)")
	if done {
		return code
	}
	conn, _, err := dialLibvirt(ctx, env, cf)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq %s: %v\n", name, err)
		return ExitFailure
	}
	defer conn.Close()
	status := ExitOK
	for _, arg := range pos {
		if err := setExcludeOne(ctx, conn, arg, exclude); err != nil {
			fmt.Fprintf(env.Stderr, "virtmq %s: %v\n", name, err)
			status = ExitFailure
			continue
		}
		if exclude {
			fmt.Fprintf(env.Stdout, "%s: excluded: virtmq leaves its NICs alone (undo with `virtmq include %s`)\n", arg, arg)
		} else {
			fmt.Fprintf(env.Stdout, "%s: included: virtmq manages its NICs by the policy again\n", arg)
		}
	}
	return status
}

func setExcludeOne(ctx context.Context, conn virt.Conn, name string, exclude bool) error {
	d, err := conn.LookupDomain(ctx, name)
	if err != nil {
		return fmt.Errorf("failed to look up domain %q: %w", name, err)
	}
	element := ""
	if exclude {
		element = domxml.ExcludeElement
	}
	return conn.SetMetadata(ctx, d, domxml.ExcludeNamespace, domxml.MetadataPrefix, element)
}
