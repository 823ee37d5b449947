/**
 * Imported first by the local entry points (demo, world, benchmark): the SDK's warning that its 2027
 * releases need Node 22 says nothing about the local world, whose output people read. Set the
 * variable to anything else to see it.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
