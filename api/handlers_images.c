/* /api/images: list, delete, prune — on the image cache library (imaged/cache.h).
 *
 * Until that library is integrated, every request is validated as api.md says (image name,
 * dry_run value) and then answered 501 NOT_SUPPORTED: the server must not report an image
 * list or a deletion it did not compute with the cache's own rules. */
#include "common/config.h"
#include "handlers.h"

static void cache_not_integrated(struct api_response *response)
{
    api_respond_errorf(response, SHED_E_NOT_SUPPORTED,
                       "image management is not available yet: the image cache library is not "
                       "integrated into this build of shed-server");
}

void handle_images_list(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    (void)request;
    (void)context;
    cache_not_integrated(response);
}

void handle_image_delete(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)context;
    const char *name = request->params[0];
    if (!shed_image_name_is_valid(name)) {
        api_respond_errorf(response, SHED_E_IMAGE_NOT_FOUND, "image \"%.80s\" not found", name);
        return;
    }
    cache_not_integrated(response);
}

void handle_images_prune(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)context;
    bool dry_run;
    struct shed_err err = {0};
    if (api_query_bool(request, "dry_run", false, &dry_run, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    cache_not_integrated(response);
}
