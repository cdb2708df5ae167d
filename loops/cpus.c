/*
 * loops/cpus.c - the CPUs this process may run on (weft_cpu_count,
 * weft_cpu_id in weft/runtime.h).
 *
 * The calling thread's affinity mask is the truth: taskset, a container's
 * cgroup cpuset (the kernel intersects the mask with it) and a parent's own
 * pinning all show there, while sysconf(_SC_NPROCESSORS_ONLN) counts every
 * online CPU of the machine, so loops and pool threads beyond the allowed
 * CPUs would only time-share them, and pinning loop i to CPU i could name a
 * CPU the process may not use (the call fails and the loop floats).
 */
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <weft/runtime.h>

/* Masks up to this many CPUs are read (the kernel's CONFIG_NR_CPUS tops out
 * at 8192); a bigger one is treated as unreadable. */
#define MAX_CPUS 8192

/* The calling thread's mask, in a set sized for the machine (the kernel
 * refuses a buffer smaller than its own mask with EINVAL, and glibc's fixed
 * cpu_set_t holds 1024 CPUs), and that size in bytes; NULL if unreadable. */
static cpu_set_t *allowed(size_t *bytes)
{
    for (int n = CPU_SETSIZE; n <= MAX_CPUS; n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (set == NULL)
            return NULL;
        *bytes = CPU_ALLOC_SIZE(n);
        if (sched_getaffinity(0, *bytes, set) == 0)
            return set;
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL)
            return NULL;
    }
    return NULL;
}

/* Without a readable mask, the online CPUs are the best guess left. */
static unsigned online(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (unsigned)c : 1;
}

unsigned weft_cpu_count(void)
{
    size_t bytes;
    cpu_set_t *set = allowed(&bytes);
    if (set == NULL)
        return online();
    int n = CPU_COUNT_S(bytes, set);
    CPU_FREE(set);
    return n > 0 ? (unsigned)n : 1;
}

int weft_cpu_id(unsigned i)
{
    size_t bytes;
    cpu_set_t *set = allowed(&bytes);
    if (set == NULL)
        return (int)(i % online());
    int n = CPU_COUNT_S(bytes, set), id = 0;
    if (n > 0) {
        unsigned left = i % (unsigned)n;
        for (int cpu = 0; cpu < (int)(bytes * 8); cpu++) {
            if (CPU_ISSET_S(cpu, bytes, set) && left-- == 0) {
                id = cpu;
                break;
            }
        }
    }
    CPU_FREE(set);
    return id;
}
