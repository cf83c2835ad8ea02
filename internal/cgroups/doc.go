// Package cgroups maps cgroup v2 ids to paths, and paths to systemd units and containers.
//
// The kernel side gives each process's cgroup v2 id (bpf_get_current_cgroup_id, or
// task->cgroups->dfl_cgrp->kn->id). On 64-bit kernels that id is the inode number of the
// cgroup's directory in cgroup2fs, so a walk of the mount maps ids back to paths.
package cgroups
