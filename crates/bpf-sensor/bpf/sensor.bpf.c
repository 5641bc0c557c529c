// SPDX-License-Identifier: GPL-2.0
//
// The ringfence BPF sensor: fixed programs that observe and forward, never judge.
// Nothing here takes content or rules; every record goes to user space over one bounded ring
// buffer, and a record that does not fit is counted in LOST, never dropped silently.
// The record layouts are mirrored by src/record.rs, which validates every length.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// The helper calls need a GPL-compatible licence; the kernel refuses the object otherwise.
char LICENSE[] SEC("license") = "GPL";

#define RF_PATH_MAX 256
// argv bytes copied per exec; the buffer is twice that so the verifier can prove that the
// last string copied at an offset below RF_ARGV_MAX still fits.
#define RF_ARGV_MAX 1024
#define RF_ARGS_MAX 32

#define RF_FLAG_TRUNCATED 1

// From the socket ABI; vmlinux.h carries no macros.
#define RF_AF_INET 2

enum rf_kind {
	RF_EXEC = 1,
	RF_NET = 2,
	RF_RENAME = 10,
	RF_UNLINK = 11,
	RF_CHMOD = 12,
	RF_CHOWN = 13,
	RF_LINK = 14,
	RF_SETID = 30,
	RF_PTRACE = 31,
	RF_MODULE = 32,
	RF_BPF = 33,
};

struct rf_header {
	__u32 kind;
	__u32 size;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u64 ktime_ns;
	char comm[16];
	__u32 egid;
	__u32 flags;
	// Records this CPU could not fit in the ring buffer since its previous record: losses
	// travel in-band, so the confined agent never needs bpf() to learn of them.
	__u64 lost;
};

struct rf_exec {
	struct rf_header h;
	__u32 filename_len;
	__u32 argv_len;
	__u32 argc;
	__u32 pad;
	char filename[RF_PATH_MAX];
	char argv[RF_ARGV_MAX * 2];
};

struct rf_file {
	struct rf_header h;
	__u32 path_len;
	__u32 path2_len;
	__u32 mode;
	__u32 owner_uid;
	__u32 owner_gid;
	__s32 dfd;
	__u32 op_flags;
	__u32 pad;
	char path[RF_PATH_MAX];
	char path2[RF_PATH_MAX];
};

struct rf_net {
	struct rf_header h;
	__u16 family;
	__u16 protocol;
	__u16 sport;
	__u16 dport;
	__u8 oldstate;
	__u8 newstate;
	__u8 pad[6];
	__u8 saddr[16];
	__u8 daddr[16];
};

struct rf_call {
	struct rf_header h;
	__u32 nr;
	__u32 pad;
	__u64 args[4];
};

// Bounded: one MiB of records in flight; what does not fit is counted below.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} LOST SEC(".maps");

// The agent's own process, set at load time: its spool writes and map reads are not news,
// and reporting them would feed back into the ring buffer.
const volatile __u32 rf_self_tgid = 0;

static __always_inline void *rf_reserve(__u32 size)
{
	void *record = bpf_ringbuf_reserve(&EVENTS, size, 0);
	if (!record) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
		if (lost)
			*lost += 1;
	}
	return record;
}

static __always_inline int rf_is_self(void)
{
	return rf_self_tgid != 0 && (bpf_get_current_pid_tgid() >> 32) == rf_self_tgid;
}

static __always_inline void rf_fill(struct rf_header *h, __u32 kind, __u32 size)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	h->kind = kind;
	h->size = size;
	h->pid = (__u32)pid_tgid;
	h->tgid = pid_tgid >> 32;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->euid = BPF_CORE_READ(task, cred, euid.val);
	h->egid = BPF_CORE_READ(task, cred, egid.val);
	h->ktime_ns = bpf_ktime_get_ns();
	h->flags = 0;
	h->lost = 0;
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
	// Per-CPU and not preempted while the program runs: nobody else touches this value now.
	if (lost && *lost) {
		h->lost = *lost;
		*lost = 0;
	}
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline __u32 rf_str(char *dst, const char *src)
{
	long n = bpf_probe_read_user_str(dst, RF_PATH_MAX, src);
	return n > 0 ? (__u32)n : 0;
}

static __always_inline int rf_exec(const char *filename, const char *const *argv)
{
	if (rf_is_self())
		return 0;
	struct rf_exec *e = rf_reserve(sizeof(*e));
	if (!e)
		return 0;
	rf_fill(&e->h, RF_EXEC, sizeof(*e));
	e->filename_len = rf_str(e->filename, filename);
	e->argc = 0;
	e->pad = 0;

	__u32 off = 0;
	for (int i = 0; i < RF_ARGS_MAX; i++) {
		const char *arg = NULL;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		if (off >= RF_ARGV_MAX) {
			e->h.flags |= RF_FLAG_TRUNCATED;
			break;
		}
		long n = bpf_probe_read_user_str(&e->argv[off & (RF_ARGV_MAX - 1)], RF_ARGV_MAX, arg);
		if (n <= 0)
			break;
		off += n;
		e->argc++;
		if (i == RF_ARGS_MAX - 1)
			e->h.flags |= RF_FLAG_TRUNCATED;
	}
	e->argv_len = off;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int rf_execve(struct trace_event_raw_sys_enter *ctx)
{
	return rf_exec((const char *)ctx->args[0], (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int rf_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_exec((const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

static __always_inline int rf_file(__u32 kind, __s32 dfd, const char *path, const char *path2,
				   __u32 mode, __u32 owner_uid, __u32 owner_gid, __u32 op_flags)
{
	if (rf_is_self())
		return 0;
	struct rf_file *f = rf_reserve(sizeof(*f));
	if (!f)
		return 0;
	rf_fill(&f->h, kind, sizeof(*f));
	f->path_len = rf_str(f->path, path);
	f->path2_len = path2 ? rf_str(f->path2, path2) : 0;
	f->mode = mode;
	f->owner_uid = owner_uid;
	f->owner_gid = owner_gid;
	f->dfd = dfd;
	f->op_flags = op_flags;
	f->pad = 0;
	bpf_ringbuf_submit(f, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int rf_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_RENAME, ctx->args[0], (const char *)ctx->args[1],
		       (const char *)ctx->args[3], 0, 0, 0, ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int rf_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_UNLINK, ctx->args[0], (const char *)ctx->args[1], NULL, 0, 0, 0,
		       ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int rf_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_CHMOD, ctx->args[0], (const char *)ctx->args[1], NULL, ctx->args[2], 0,
		       0, 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int rf_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_CHMOD, ctx->args[0], (const char *)ctx->args[1], NULL, ctx->args[2], 0,
		       0, ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_fchownat")
int rf_fchownat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_CHOWN, ctx->args[0], (const char *)ctx->args[1], NULL, 0, ctx->args[2],
		       ctx->args[3], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_linkat")
int rf_linkat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_file(RF_LINK, ctx->args[0], (const char *)ctx->args[1],
		       (const char *)ctx->args[3], 0, 0, 0, ctx->args[4]);
}

// Set-id, ptrace, module and bpf() calls: the call's number and first arguments, nothing read
// from user memory. Only the arguments the call has are read: the kernel refuses to attach a
// program that reads past the end of a tracepoint's record.
#define RF_CALL(name, kind, nargs)                                    \
	SEC("tracepoint/syscalls/sys_enter_" #name)                   \
	int rf_##name(struct trace_event_raw_sys_enter *ctx)          \
	{                                                             \
		if (rf_is_self())                                     \
			return 0;                                     \
		struct rf_call *c = rf_reserve(sizeof(*c));           \
		if (!c)                                               \
			return 0;                                     \
		rf_fill(&c->h, kind, sizeof(*c));                     \
		c->nr = ctx->id;                                      \
		c->pad = 0;                                           \
		c->args[0] = ctx->args[0];                            \
		c->args[1] = nargs > 1 ? ctx->args[nargs > 1 ? 1 : 0] : 0; \
		c->args[2] = nargs > 2 ? ctx->args[nargs > 2 ? 2 : 0] : 0; \
		c->args[3] = 0;                                       \
		bpf_ringbuf_submit(c, 0);                             \
		return 0;                                             \
	}

RF_CALL(setuid, RF_SETID, 1)
RF_CALL(setgid, RF_SETID, 1)
RF_CALL(setreuid, RF_SETID, 2)
RF_CALL(setregid, RF_SETID, 2)
RF_CALL(setresuid, RF_SETID, 3)
RF_CALL(setresgid, RF_SETID, 3)
RF_CALL(ptrace, RF_PTRACE, 3)
RF_CALL(init_module, RF_MODULE, 3)
RF_CALL(finit_module, RF_MODULE, 3)
RF_CALL(bpf, RF_BPF, 3)

// TCP state changes carry the 5-tuple: SYN_SENT is a connect, LISTEN a listen, and
// SYN_RECV -> ESTABLISHED a connection a listener will accept.
SEC("tracepoint/sock/inet_sock_set_state")
int rf_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	int old = ctx->oldstate, new = ctx->newstate;
	if (!(new == TCP_SYN_SENT || new == TCP_LISTEN ||
	      (old == TCP_SYN_RECV && new == TCP_ESTABLISHED)))
		return 0;
	if (rf_is_self())
		return 0;
	struct rf_net *n = rf_reserve(sizeof(*n));
	if (!n)
		return 0;
	rf_fill(&n->h, RF_NET, sizeof(*n));
	n->family = ctx->family;
	n->protocol = ctx->protocol;
	n->sport = ctx->sport;
	n->dport = ctx->dport;
	n->oldstate = old;
	n->newstate = new;
	__builtin_memset(n->pad, 0, sizeof(n->pad));
	if (ctx->family == RF_AF_INET) {
		__builtin_memset(n->saddr, 0, sizeof(n->saddr));
		__builtin_memset(n->daddr, 0, sizeof(n->daddr));
		// Copies through a helper: the verifier allows only fixed-offset loads from a
		// tracepoint's context, which a memcpy of an array is not.
		bpf_probe_read_kernel(n->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(n->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(n->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(n->daddr, 16, ctx->daddr_v6);
	}
	bpf_ringbuf_submit(n, 0);
	return 0;
}
