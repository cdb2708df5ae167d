/* examples/hello: the README's example. Spawn tasks, sleep, await, gather by hand. */
#include <stdio.h>
#include <weft/weft.h>

static int worker(void *arg, void **result)
{
    intptr_t n = weft_to_int(arg);
    int rc = weft_sleep((uint64_t)(10 * n)); /* suspends this task only */
    if (rc != 0)
        return rc; /* UV_ECANCELED if someone cancelled us */
    *result = weft_int(n * n);
    return 0;
}

static int main_task(void *arg, void **result)
{
    (void)arg;
    weft_task_t *tasks[5];
    for (intptr_t i = 0; i < 5; i++)
        if (weft_spawn(NULL, worker, weft_int(i + 1), &tasks[i]) != 0)
            return UV_ENOMEM;
    intptr_t sum = 0; /* gather by hand: await each, in order */
    for (int i = 0; i < 5; i++) {
        void *r;
        if (weft_await_task(tasks[i], &r) == 0)
            sum += weft_to_int(r);
        weft_task_unref(tasks[i]);
    }
    *result = weft_int(sum);
    return 0;
}

int main(void)
{
    void *sum;
    int rc = weft_run(main_task, NULL, &sum);
    printf("sum of squares: %ld (%s)\n", (long)weft_to_int(sum), weft_strerror(rc));
    return rc == 0 && weft_to_int(sum) == 55 ? 0 : 1;
}
