// Azure Database for PostgreSQL Flexible Server 16 with Entra ID authentication only (no password
// login exists), TLS required, and the `trawl` database. One Entra administrator (the principal
// running azd, or a group); the app's managed identity is not one: infra/hooks/postprovision.sh,
// signed in as that administrator, creates its role as a plain (non-admin) role that may connect to
// the `trawl` database and create, and so own, its tables in that database's `public` schema.

@description('Required. Name of the server (also the first label of its host name).')
param name string

@description('Optional. Location of the server.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the server.')
param tags object = {}

@description('Optional. Compute size, e.g. Standard_B2s (Burstable) or Standard_D2ds_v5 (GeneralPurpose); main.bicep sizes the app\'s connections from it.')
param skuName string = 'Standard_B2s'

@description('Optional. Compute tier; zone-redundant high availability needs GeneralPurpose or MemoryOptimized.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string = 'Burstable'

@description('Optional. Storage size in GB (grows automatically).')
param storageSizeGB int = 32

@description('Optional. Days of point-in-time restore.')
@minValue(7)
@maxValue(35)
param backupRetentionDays int = 7

@description('Optional. Keep backups geo-redundant (can only be chosen when the server is created).')
param geoRedundantBackup bool = false

@description('Optional. Zone-redundant high availability (a standby in another zone); not available on Burstable.')
param zoneRedundantHa bool = false

@description('Optional. true: public endpoint guarded by firewallRules; false: private access through delegatedSubnetId and privateDnsZoneId.')
param publicAccess bool = true

@description('Optional. Firewall rules when publicAccess is true: objects with name, startIpAddress, endIpAddress.')
param firewallRules array = []

@description('Optional. Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers (publicAccess false).')
param delegatedSubnetId string = ''

@description('Optional. Private DNS zone (*.postgres.database.azure.com) linked to the VNet (publicAccess false).')
param privateDnsZoneId string = ''

@description('Required. Entra administrators: objects with objectId, principalName and principalType (User, Group or ServicePrincipal). At least one, or nobody can create the app\'s role.')
@minLength(1)
param administrators array

@description('Optional. Name of the application database.')
param databaseName string = 'trawl'

@description('Required. Resource id of the Log Analytics workspace that receives the server\'s logs.')
param logAnalyticsWorkspaceId string

// TLS on every connection, 1.2 at least, and the connection log an auditor asks for.
var serverParameters = [
  {
    name: 'require_secure_transport'
    value: 'ON'
  }
  {
    name: 'ssl_min_protocol_version'
    value: 'TLSv1.2'
  }
  {
    name: 'log_connections'
    value: 'ON'
  }
  {
    name: 'log_disconnections'
    value: 'ON'
  }
]

var publicNetwork = {
  publicNetworkAccess: 'Enabled'
}
var privateNetwork = {
  publicNetworkAccess: 'Disabled'
  delegatedSubnetResourceId: delegatedSubnetId
  privateDnsZoneArmResourceId: privateDnsZoneId
}

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: '16'
    createMode: 'Default'
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    highAvailability: {
      mode: zoneRedundantHa ? 'ZoneRedundant' : 'Disabled'
    }
    network: publicAccess ? publicNetwork : privateNetwork
  }
}

// The server accepts one change at a time: parameters, database, firewall rules and administrators
// are applied one after another (batchSize 1 and dependsOn), or ARM fails with ServerIsBusy.
@batchSize(1)
resource parameters 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = [for parameter in serverParameters: {
  parent: server
  name: parameter.name
  properties: {
    value: parameter.value
    source: 'user-override'
  }
}]

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    parameters
  ]
}

@batchSize(1)
resource firewall 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [for rule in firewallRules: if (publicAccess) {
  parent: server
  name: rule.name
  properties: {
    startIpAddress: rule.startIpAddress
    endIpAddress: rule.endIpAddress
  }
  dependsOn: [
    database
  ]
}]

// Last, and on purpose: right after creation the server can still refuse Entra principal
// operations (AadAuthOperationCannotBePerformedWhenServerIsNotAccessible, a known race:
// Azure/azure-postgresql#127). Everything before this step is then in place, so a second
// `azd provision` finds nothing else to change and only adds the administrator.
@batchSize(1)
resource entraAdministrators 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = [for admin in administrators: {
  parent: server
  name: admin.objectId
  properties: {
    principalName: admin.principalName
    principalType: admin.principalType
    tenantId: tenant().tenantId
  }
  dependsOn: [
    database
    firewall
  ]
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'postgres-to-log-analytics'
  scope: server
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('The server\'s name.')
output name string = server.name

@description('The server\'s resource id (alert scope).')
output resourceId string = server.id

@description('The server\'s host name, e.g. psql-trawl-abc.postgres.database.azure.com.')
output fqdn string = server.properties.fullyQualifiedDomainName

@description('The application database\'s name.')
output databaseName string = database.name
