/*
 * runtime.c: the graph walk, the thread pool and the dispatch table.
 *
 * gg_graph_compute() is the one call Python makes per compute. The calling
 * thread becomes thread 0; n_threads-1 pool workers join it. Every thread
 * walks the same node list, runs its share of each node and meets the others
 * at a barrier before the next node (ops that only describe memory, views,
 * are skipped without one). Workers persist between computes: they spin a
 * little after a graph ends, so the next decode step finds them awake, then
 * sleep on a condition variable.
 */
#define _GNU_SOURCE
#include "ggraph_impl.h"
#include "vec.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* ---- dispatch table from ops.def ---- */

typedef void (*gg_kernel)(const gg_params *p, gg_tensor *dst);

/* weak: an op declared in ops.def whose kernel is not linked yet gets a NULL
 * entry, which gg_graph_compute reports as GG_ERR_NO_KERNEL instead of the
 * build failing (tests/test_registry.py insists every op has one) */
#define GG_OP(NAME, name) void gg_fwd_##name(const gg_params *p, gg_tensor *dst) __attribute__((weak));
#include "ops.def"
#undef GG_OP

static const gg_kernel gg_kernels[GG_OP_COUNT] = {
#define GG_OP(NAME, name) gg_fwd_##name,
#include "ops.def"
#undef GG_OP
};

static const char *const gg_op_names[GG_OP_COUNT] = {
#define GG_OP(NAME, name) #name,
#include "ops.def"
#undef GG_OP
};

/* ops that only reinterpret memory: nothing to run, no barrier needed */
void gg_fwd_none(const gg_params *p, gg_tensor *dst) { GG_UNUSED(p); GG_UNUSED(dst); }
void gg_fwd_view(const gg_params *p, gg_tensor *dst) { GG_UNUSED(p); GG_UNUSED(dst); }
void gg_fwd_reshape(const gg_params *p, gg_tensor *dst) { GG_UNUSED(p); GG_UNUSED(dst); }
void gg_fwd_permute(const gg_params *p, gg_tensor *dst) { GG_UNUSED(p); GG_UNUSED(dst); }
void gg_fwd_transpose(const gg_params *p, gg_tensor *dst) { GG_UNUSED(p); GG_UNUSED(dst); }

int gg_op_is_nop(int op) {
    return op == GG_OP_NONE || op == GG_OP_VIEW || op == GG_OP_RESHAPE ||
           op == GG_OP_PERMUTE || op == GG_OP_TRANSPOSE;
}

int gg_op_count(void) { return GG_OP_COUNT; }

int gg_op_has_kernel(int op) { return op >= 0 && op < GG_OP_COUNT && gg_kernels[op] != NULL; }

const char *gg_op_name(int op) {
    return (op >= 0 && op < GG_OP_COUNT) ? gg_op_names[op] : "?";
}

static atomic_int gg_use_simd = 1;

int  gg_simd_available(void) { return GG_AVX2; }
void gg_set_use_simd(int on) { atomic_store(&gg_use_simd, on ? 1 : 0); }
int  gg_get_use_simd(void) { return atomic_load(&gg_use_simd); }

/* ---- thread pool ---- */

#define GG_MAX_THREADS 64
#define GG_SPIN_BEFORE_YIELD 4096
#define GG_SPIN_BEFORE_SLEEP 20000      /* ~0.5 ms of pause: covers the Python gap between decode steps */

/* job word: generation << 8 | n_threads of that job, read in one load so a
 * worker never pairs one job's generation with another job's thread count */
#define GG_JOB(gen, nth) (((int64_t)(gen) << 8) | (int64_t)(nth))
#define GG_JOB_NTH(job) ((int)((job) & 0xff))

struct gg_threadpool {
    pthread_t       threads[GG_MAX_THREADS];
    int64_t         start_job[GG_MAX_THREADS]; /* job word when each worker was made */
    int             n_created;          /* workers started (thread 0 is the caller) */

    pthread_mutex_t compute_mutex;      /* one graph at a time */
    pthread_mutex_t wake_mutex;
    pthread_cond_t  wake_cond;

    /* the job: written by thread 0 before publishing the job word */
    gg_cgraph      *graph;
    int             n_threads;
    int             use_simd;
    int64_t         gen;
    _Atomic int64_t job;
    atomic_int      n_finished;         /* workers of this job that are done */

    atomic_int      barrier_count;
    atomic_int      barrier_gen;
    atomic_int      error;
    atomic_int      error_at_barrier;   /* error as it was when the last barrier opened */
};

static gg_threadpool gg_pool = {
    .compute_mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake_mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake_cond = PTHREAD_COND_INITIALIZER,
};

static inline void gg_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void gg_barrier(const gg_params *p) {
    gg_threadpool *pool = p->pool;
    const int nth = pool->n_threads;
    if (nth == 1) return;
    const int gen = atomic_load_explicit(&pool->barrier_gen, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&pool->barrier_count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&pool->barrier_count, 0, memory_order_relaxed);
        /* the snapshot every thread reads after this barrier: a fast thread's
         * gg_fail in the next node must not reach a slow thread that has not
         * read the flag yet, or that one stops a node early and the others
         * wait for it at the next barrier forever */
        atomic_store_explicit(&pool->error_at_barrier, atomic_load(&pool->error), memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->barrier_gen, 1, memory_order_release);
        return;
    }
    /* spin, then yield: with more threads than cores a pure spin would starve
     * the thread everyone is waiting for */
    for (int spins = 0; atomic_load_explicit(&pool->barrier_gen, memory_order_acquire) == gen; spins++) {
        if (spins < GG_SPIN_BEFORE_YIELD) gg_cpu_relax();
        else sched_yield();
    }
}

void gg_fail(const gg_params *p, int code) {
    int expected = GG_OK;
    atomic_compare_exchange_strong(&p->pool->error, &expected, code);
}

/* the services kernels built apart from the runtime call (ggraph_kernel.h) */
static const gg_runtime gg_runtime_services = {
    .version = GG_RUNTIME_VERSION,
    .barrier = gg_barrier,
    .fail = gg_fail,
    .cvt_to_f32 = gg_cvt_to_f32,
    .cvt_from_f32 = gg_cvt_from_f32,
};

static int64_t gg_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void gg_compute_thread(gg_threadpool *pool, int ith) {
    gg_cgraph *g = pool->graph;
    gg_params params = {
        .ith = ith, .nth = pool->n_threads,
        .wsize = g->wsize, .wdata = g->wdata,
        .use_simd = pool->use_simd, .pool = pool, .rt = &gg_runtime_services,
    };
    if (g->node_ns) gg_barrier(&params);     /* workers' wake-up is not node 0's time */
    int64_t t0 = (ith == 0 && g->node_ns) ? gg_now_ns() : 0;
    for (int i = 0; i < g->n_nodes; i++) {
        gg_tensor *node = g->nodes[i];
        if (gg_op_is_nop(node->op)) {
            if (ith == 0 && g->node_ns) g->node_ns[i] = 0;
            continue;
        }
        const int nt = g->n_tasks[i];
        if (ith < nt) {
            params.ith = ith;
            params.nth = nt;
            gg_kernels[node->op](&params, node);
        }
        gg_barrier(&params);
        if (ith == 0 && g->node_ns) {
            const int64_t t1 = gg_now_ns();
            g->node_ns[i] = t1 - t0;
            t0 = t1;
        }
        /* every thread reads the same snapshot, taken when the barrier opened, so all stop together */
        const int err = pool->n_threads == 1 ? atomic_load(&pool->error)
                                             : atomic_load_explicit(&pool->error_at_barrier, memory_order_acquire);
        if (err != GG_OK) {
            if (ith == 0) g->failed_node = i;
            break;
        }
    }
}

/* A worker runs the jobs whose thread count includes it. Only those workers
 * are waited for, so idle workers of a larger earlier job cost nothing. */
static void *gg_worker_main(void *arg) {
    const int ith = (int)(intptr_t)arg;
    gg_threadpool *pool = &gg_pool;
    int64_t seen = pool->start_job[ith];     /* not the job word now: a job may already be posted */
    for (;;) {
        int64_t job;
        int spins = 0;
        while ((job = atomic_load_explicit(&pool->job, memory_order_acquire)) == seen) {
            if (++spins < GG_SPIN_BEFORE_SLEEP) {
                gg_cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->wake_mutex);
            while ((job = atomic_load(&pool->job)) == seen) {
                pthread_cond_wait(&pool->wake_cond, &pool->wake_mutex);
            }
            pthread_mutex_unlock(&pool->wake_mutex);
            break;
        }
        seen = job;
        if (ith < GG_JOB_NTH(job)) {
            /* thread 0 waits for us before it touches the job fields again */
            gg_compute_thread(pool, ith);
            atomic_fetch_add_explicit(&pool->n_finished, 1, memory_order_acq_rel);
        }
    }
    return NULL;
}

static int gg_pool_grow(gg_threadpool *pool, int n_threads) {
    while (pool->n_created + 1 < n_threads) {
        const int ith = pool->n_created + 1;
        pool->start_job[ith] = atomic_load(&pool->job);
        if (pthread_create(&pool->threads[ith], NULL, gg_worker_main, (void *)(intptr_t)ith) != 0) {
            return GG_ERR_THREADS;
        }
        pthread_detach(pool->threads[ith]);
        pool->n_created++;
    }
    return GG_OK;
}

int gg_threadpool_size(void) { return gg_pool.n_created + 1; }

int gg_graph_compute(gg_cgraph *g, int n_threads) {
    gg_threadpool *pool = &gg_pool;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > GG_MAX_THREADS) n_threads = GG_MAX_THREADS;
    for (int i = 0; i < g->n_nodes; i++) {
        const int op = g->nodes[i]->op;
        if (!gg_op_has_kernel(op)) { g->failed_node = i; return GG_ERR_NO_KERNEL; }
        if (g->n_tasks[i] < 1) g->n_tasks[i] = 1;
        if (g->n_tasks[i] > n_threads) g->n_tasks[i] = n_threads;
    }

    pthread_mutex_lock(&pool->compute_mutex);
    int rc = gg_pool_grow(pool, n_threads);
    if (rc != GG_OK) {
        pthread_mutex_unlock(&pool->compute_mutex);
        return rc;
    }
    g->failed_node = -1;
    pool->graph = g;
    pool->n_threads = n_threads;
    pool->use_simd = atomic_load(&gg_use_simd) && GG_AVX2;
    atomic_store(&pool->error, GG_OK);
    atomic_store(&pool->error_at_barrier, GG_OK);
    atomic_store(&pool->barrier_count, 0);
    atomic_store(&pool->n_finished, 0);

    if (n_threads > 1) {
        pool->gen++;
        pthread_mutex_lock(&pool->wake_mutex);
        atomic_store_explicit(&pool->job, GG_JOB(pool->gen, n_threads), memory_order_release);
        pthread_cond_broadcast(&pool->wake_cond);
        pthread_mutex_unlock(&pool->wake_mutex);
    }

    gg_compute_thread(pool, 0);

    for (int spins = 0; atomic_load_explicit(&pool->n_finished, memory_order_acquire) < n_threads - 1; spins++) {
        if (spins < GG_SPIN_BEFORE_YIELD) gg_cpu_relax();
        else sched_yield();
    }
    rc = atomic_load(&pool->error);
    pool->graph = NULL;
    pthread_mutex_unlock(&pool->compute_mutex);
    return rc;
}

/* ---- row conversions for Python (numpy has no bf16, and F16C is faster) ---- */

void gg_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n) { gg_vec_f32_to_f16(x, y, n); }
void gg_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n) { gg_vec_f16_to_f32(x, y, n); }
void gg_fp32_to_bf16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gg_fp32_to_bf16(x[i]);
}
void gg_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gg_bf16_to_fp32(x[i]);
}
