/*
 * nvml_stub.c - a stand-in for libnvidia-ml.so.1, built as a shared
 * library (CMakeLists.txt, "NVML stand-in" block) so that
 * test_metrics_linux runs metrics_linux.c's NVML path for real through
 * dlopen on a machine without an NVIDIA driver.
 *
 * It implements the seven entry points metrics_linux.c resolves, with
 * the types laid out as NVIDIA's nvml.h declares them (written here from
 * that header, not shared with metrics_linux.c, so a layout mistake on
 * either side shows up as a wrong value in the test). Default: two
 * "NVIDIA H100 80GB HBM3", 80 GiB each, 10 and 30 GiB used, 40 % and
 * 60 % busy. HERD_NVML_STUB_MODE, read on every call, picks a failure:
 *
 *   init_fail         nvmlInit_v2 fails (no driver)
 *   count0            no device
 *   count_fail        nvmlDeviceGetCount_v2 fails
 *   many              12 devices (more than METRICS_GPU_MAX)
 *   dev1_handle       device 1: no handle (NO_PERMISSION, e.g. a cgroup)
 *   dev1_memory       device 1: memory info fails (GPU_IS_LOST)
 *   dev1_memory_nosup device 1: memory info NOT_SUPPORTED (unified
 *                     memory, as NVIDIA GB10 answers)
 *   dev1_name         device 1: the name call fails after scribbling
 *   dev1_util         device 1: utilisation NOT_SUPPORTED
 *   name_unterminated every name fills the whole buffer, no NUL
 *
 * Like NVML, init is counted and every other call fails with
 * NVML_ERROR_UNINITIALIZED outside an init/shutdown pair. A successful
 * first init allocates a block that the last shutdown frees, so a
 * missing nvmlShutdown is also a leak that LeakSanitizer reports once
 * the library is unloaded. nvml_stub_count() (not NVML) lets the test
 * read its counters through a handle of its own.
 */
#include <stdlib.h>
#include <string.h>

/* From nvml.h. */
typedef enum nvmlReturn_enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999,
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct nvmlMemory_st {
    unsigned long long total; /* bytes */
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct nvmlUtilization_st {
    unsigned int gpu;    /* percent */
    unsigned int memory; /* percent */
} nvmlUtilization_t;

/* The exported NVML entry points (nvml.h's prototypes). */
nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                           nvmlDevice_t *device);
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name,
                               unsigned int length);
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory);
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                           nvmlUtilization_t *utilization);
/* Not NVML: "init", "shutdown" (calls so far), "live" (init depth) or
 * "name_length" (the buffer size the last nvmlDeviceGetName was given). */
int nvml_stub_count(const char *what);

#define STUB_DEVICES 12
#define STUB_GIB     (1024ULL * 1024 * 1024)
#define STUB_NAME    "NVIDIA H100 80GB HBM3"

struct nvmlDevice_st {
    unsigned int index;
};

static struct nvmlDevice_st stub_dev[STUB_DEVICES] = {
    {0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11},
};
static int stub_init_calls, stub_shutdown_calls, stub_depth, stub_name_len;
static void *stub_session; /* owned: allocated by the first init */

static int
stub_mode(const char *mode)
{
    const char *m = getenv("HERD_NVML_STUB_MODE");

    return m != NULL && strcmp(m, mode) == 0;
}

static unsigned int
stub_count(void)
{
    if (stub_mode("count0"))
        return 0;
    return stub_mode("many") ? STUB_DEVICES : 2;
}

/* The device behind a handle, or -1 when it is not one of ours. */
static int
stub_index(nvmlDevice_t dev)
{
    for (unsigned int i = 0; i < stub_count(); i++) {
        if (dev == &stub_dev[i])
            return (int)i;
    }
    return -1;
}

nvmlReturn_t
nvmlInit_v2(void)
{
    stub_init_calls++;
    if (stub_mode("init_fail"))
        return NVML_ERROR_DRIVER_NOT_LOADED;
    if (stub_depth == 0) {
        stub_session = malloc(64);
        if (stub_session == NULL)
            return NVML_ERROR_UNKNOWN;
    }
    stub_depth++;
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlShutdown(void)
{
    stub_shutdown_calls++;
    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (--stub_depth == 0) {
        free(stub_session);
        stub_session = NULL;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (deviceCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (stub_mode("count_fail"))
        return NVML_ERROR_UNKNOWN;
    *deviceCount = stub_count();
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || index >= stub_count())
        return NVML_ERROR_INVALID_ARGUMENT;
    if (index == 1 && stub_mode("dev1_handle"))
        return NVML_ERROR_NO_PERMISSION;
    *device = &stub_dev[index];
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    int i = stub_index(device);

    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (i < 0 || name == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    stub_name_len = (int)length;
    if (i == 1 && stub_mode("dev1_name")) {
        /* A half-written buffer: the caller must not use it. */
        memset(name, '?', length < 8 ? length : 8);
        return NVML_ERROR_UNKNOWN;
    }
    if (stub_mode("name_unterminated")) {
        /* Every byte of the buffer, the last one included, is text:
         * a reader that trusts a NUL inside it runs off the end. */
        memset(name, 'X', length);
        memcpy(name, STUB_NAME,
               length < sizeof(STUB_NAME) - 1 ? length : sizeof(STUB_NAME) - 1);
        return NVML_SUCCESS;
    }
    if (length < sizeof(STUB_NAME))
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(name, STUB_NAME, sizeof(STUB_NAME));
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    int i = stub_index(device);

    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (i < 0 || memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (i == 1 &&
        (stub_mode("dev1_memory") || stub_mode("dev1_memory_nosup"))) {
        /* Garbage left behind: the caller must not use it. */
        memset(memory, 0xab, sizeof(*memory));
        return stub_mode("dev1_memory") ? NVML_ERROR_GPU_IS_LOST
                                        : NVML_ERROR_NOT_SUPPORTED;
    }
    memory->total = 80 * STUB_GIB;
    /* 10 and 30 GiB on the default pair; 1 GiB per index when "many". */
    if (stub_mode("many"))
        memory->used = (unsigned long long)i * STUB_GIB;
    else
        memory->used = i == 0 ? 10 * STUB_GIB : 30 * STUB_GIB;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                              nvmlUtilization_t *utilization)
{
    int i = stub_index(device);

    if (stub_depth == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (i < 0 || utilization == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (i == 1 && stub_mode("dev1_util"))
        return NVML_ERROR_NOT_SUPPORTED;
    utilization->gpu = i == 0 ? 40 : 60;
    utilization->memory = 7; /* not read by herd-node */
    return NVML_SUCCESS;
}

int
nvml_stub_count(const char *what)
{
    if (strcmp(what, "init") == 0)
        return stub_init_calls;
    if (strcmp(what, "shutdown") == 0)
        return stub_shutdown_calls;
    if (strcmp(what, "live") == 0)
        return stub_depth;
    if (strcmp(what, "name_length") == 0)
        return stub_name_len;
    return -1;
}
